"""synthtune: teach an LLM a narrow skill from synthetic data, reproducibly.

Importing the package makes the process offline, whatever shell it was started from: the
Hugging Face libraries may not download (the base model ships as a package), and the
analytics of Kedro, DVC and Great Expectations are off. Kedro imports this package (through
``synthtune.settings``) before any pipeline imports those libraries, which read the
variables at import time.
"""

import os

#: Set on import; ``scripts/env.sh`` sets the same for tools run outside Python's reach.
OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "False",
}
os.environ.update(OFFLINE_ENVIRONMENT)

__version__ = "0.1.0"
