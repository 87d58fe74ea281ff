"""Pictures: loss curves, attention heatmaps, attention rollout."""
