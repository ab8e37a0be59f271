reported = []      # messages, in order
tracebacks = []    # per reported message: whether the host would print its traceback


def report(message, *, exc_info=False):
    reported.append(message)
    tracebacks.append(bool(exc_info))


def display(e, task, *, full_traceback=False):
    report(f"{task}: {type(e).__name__}: {e}", exc_info=True)
