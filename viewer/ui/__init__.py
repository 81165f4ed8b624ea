"""Qt widgets, views, tools, panels and the main window (see viewer/ui/app.py)."""
