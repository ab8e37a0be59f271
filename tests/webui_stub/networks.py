available_networks = {}
available_network_aliases = {}
forbidden_network_aliases = {}
refreshes = []


def list_available_networks():
    refreshes.append(1)
