"""Offline tools that search, fit or calibrate, above the runtime plugins, metrics and evaluation.

| module | what it does |
|---|---|
| :mod:`.tune`, :mod:`.stack_space` | NSGA-II over the step count and every plugin stack, plans (``accel tune``) |
| :mod:`.cache_search`, :mod:`.cache_search_spaces` | NSGA-II search of caching schedules (``accel search-cache``) |
| :mod:`.head_pattern_search`, :mod:`.sparse_calibration` | per-head sparse-attention patterns from dense runs |
| :mod:`.nsga2` | the seeded, resumable NSGA-II generation step both searches share |
| :mod:`.linear_ag_fit` | LinearAG coefficients from CFG trajectories (``accel calibrate-linear-ag``) |
| :mod:`.repavit_finetune` | RePaViT distillation fine-tune (``accel reparam finetune``) |

Runtime plugins never import this package; it imports them. Submodules load on first use, since
each pulls in heavier dependencies (pymoo, the metrics, the built-in models).
"""
