"""Flask commands: `flask facilities import`, `flask seed-demo`."""


def register(app) -> None:
    pass
