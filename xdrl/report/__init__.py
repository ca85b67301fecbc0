"""``xdrl report``: what a Tune + Optuna experiment found, as tables, figures and a Markdown page."""
