reported = []


def report(message, *, exc_info=False):
    reported.append(message)
