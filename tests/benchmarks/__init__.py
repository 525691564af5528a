def machine_info() -> dict[str, object]:
    """What every benchmark records about the machine it ran on."""
    import os
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "note": "shared machine: other jobs may run at the same time",
    }
