"""The Textual terminal app (panes, patch review, watch mode) and the headless `watch` command."""
