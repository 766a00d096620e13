"""The one error every configuration mistake becomes, and the check that raises it."""


class ConfigError(ValueError):
    """A bad configuration: the message is one line naming the key and the fix."""


def check(ok: bool, key: str, message: str) -> None:
    """Raise ConfigError("KEY: MESSAGE") unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {message}")
