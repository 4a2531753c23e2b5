"""A one-line description of the machine a measurement ran on."""

import logging
import os
import platform

logger = logging.getLogger(__name__)


def machine_description():
    """CPU model, logical cores and OS, for the summary."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle
                     if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        logger.debug("no /proc/cpuinfo: CPU model from platform.processor()")
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    system = f"{platform.system()} {platform.release()}"
    return f"{model or 'unknown CPU'}, {cores} logical cores, {system}"
