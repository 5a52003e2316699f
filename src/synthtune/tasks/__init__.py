"""Tasks: one module per skill, each knowing how to make, label and verify its rows."""
