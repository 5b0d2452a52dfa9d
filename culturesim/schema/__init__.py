"""The study file: the pydantic schema of a study TOML, its analysis plan and design."""
