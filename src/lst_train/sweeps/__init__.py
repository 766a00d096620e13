"""Compute- and data-controlled scaling sweeps: plan, launch, collect, fit, plot (docs/sweeps.md).

Python entry points: `plan.plan_sweep`, `launch.launch`, `collect.collect`, `fit.fit_power_law`, `plot.plot`.
"""
