"""The engine. Nothing under this package may import Textual (tests/test_layering.py enforces it)."""
