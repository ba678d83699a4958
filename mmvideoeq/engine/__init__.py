from .loops import *  # noqa: F401,F403
