# Makes configs/ importable as the package `bnlab.configs` (see pyproject.toml),
# so Hydra finds it with `pkg://bnlab.configs` from any working directory.
