"""logmedic's diagnosis engine: preprocessing, rules, training and prediction.

This package never imports Flask; the web layer in `service/` depends on it.
"""
