"""The papers' experiments with this code: the experiment list (experiments.py), the runner
(runner.py), the tables (tables.py), the figures (figures.py) and the published numbers they are
compared with (published.py).  ``python reproduce.py`` drives them."""
