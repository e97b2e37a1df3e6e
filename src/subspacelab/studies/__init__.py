"""One package per paper: config.py (schema), core.py (maths), study.py (steps and claims)."""
