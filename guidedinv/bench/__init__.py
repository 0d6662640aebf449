"""The benchmark (never imported by runtime code, tests/test_layout.py): :mod:`.harness` holds the
protocol, tasks, measurements and the run; :mod:`.instruments` the models, call counting and memory
meter; :mod:`.report` the CSV, tables, plots and docs page; :mod:`.peers` and :mod:`.peers_run` the
comparison with deepinv's and diffusers' methods."""
