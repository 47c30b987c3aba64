"""EyesOpen, MouthOpen and Smile against hand labels: thresholds fitted on one half, checked on the other."""
