"""loop: controllers, the runner, Ray workers, the gymnasium env, Ray Tune/Optuna glue, the CLI.

Importing ``loop`` registers ``gymnasium.make("dropt/DomainRandomization-v0", config=PATH)``
(the env module itself is imported only when the env is made)."""


def _register_env() -> None:
    try:
        import gymnasium
    except ImportError:  # pragma: no cover - gymnasium is a dependency
        return
    if "dropt/DomainRandomization-v0" not in gymnasium.registry:
        gymnasium.register(id="dropt/DomainRandomization-v0", entry_point="loop.env:DomainRandomizationEnv")


_register_env()
