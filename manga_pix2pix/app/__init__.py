"""The `serve` web app: a local page for painting colour cues over a sketch (see `server`)."""
