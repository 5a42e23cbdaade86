def get_config(arg=None)
    return None
