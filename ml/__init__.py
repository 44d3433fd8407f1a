"""Pure model code: torch + transformers (and NumPy), never Django, Celery or the apps. Configs, losses, the trainers
on one fit loop (reward, SFT, DPO, PPO), the policy and sampling, the one Bradley–Terry fit (statistics) and the run's
log context. Importing it, or any module in it, loads no django, celery, kombu or sqlalchemy (tests/ml/test_purity.py);
a GPU machine can run it with nothing else."""
