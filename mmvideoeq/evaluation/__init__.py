from .metrics import *  # noqa
