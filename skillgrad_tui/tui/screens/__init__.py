"""Screens pushed over the main screen: patch review, trajectory, help."""
