"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Named environments (e.g. ``smoke``) override single nested keys, not whole blocks.
    "merge_strategy": {"parameters": "soft"},
}

from synthtune.hooks import RunHooks  # noqa: E402  (after the loader settings it does not need)

HOOKS = (RunHooks(),)
