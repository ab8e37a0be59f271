"""Stylus's user errors, in one place. A user error is a problem with the user's files, settings or input
(a missing or wrong model file, a reference image that is not an image): the web UI layer reports it as ONE
'skipped' line and generates without the feature. Every other exception, ValueError included, is a Stylus
bug: it is reported as 'failed' with its traceback, so that it gets seen and fixed.

Declare a new user error by subclassing StylusUserError (add a builtin base too where callers catch it, e.g.
``class AdapterFormatError(StylusUserError, ValueError)``), or, for a class that cannot change its bases,
by adding it to USER_ERRORS."""
from __future__ import annotations


class StylusUserError(Exception):
    """Base of every error whose message alone tells the user what to fix."""


USER_ERRORS: tuple = (StylusUserError,)


def is_user_error(error: BaseException) -> bool:
    return isinstance(error, USER_ERRORS)


def first_line(error: BaseException) -> str:
    """'ClassName: the first line of its message' (200 characters at most): what a one-line report quotes of
    an exception from a library (transformers, safetensors, torch) whose messages run over many lines."""
    text = str(error).strip().splitlines()
    return "%s: %s" % (type(error).__name__, text[0][:200]) if text else type(error).__name__


class InvalidSetting(StylusUserError, ValueError):
    """A value the user typed or sent (a custom block list, an option) that Stylus cannot use."""


class UnsupportedModel(StylusUserError, RuntimeError):
    """The loaded checkpoint is not one a feature works with (reference style: SD1.5 or SDXL UNets)."""
