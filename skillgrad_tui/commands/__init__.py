"""Headless sub-commands beyond the core CLI: each module offers `add_parsers` and `HANDLERS`."""
