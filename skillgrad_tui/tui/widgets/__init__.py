"""Panes of the main screen; each renders core events and owns no engine state."""
