"""Whether this machine's CPU is of the kind the shipped checkpoints were trained on.

Training is reproducible byte for byte on one kind of CPU, not across kinds: torch's float
kernels (oneDNN, its ISA dispatch) round differently on another vendor's CPU. The shipped
checkpoints were trained on Intel machines; on others the byte-for-byte tests check that the
retrained model still does what the shipped one does instead.
"""

from __future__ import annotations

from pathlib import Path

RECORDED_VENDOR = "GenuineIntel"


def cpu_vendor() -> str:
    """vendor_id of /proc/cpuinfo ('' where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith("vendor_id"):
            return line.partition(":")[2].strip()
    return ""


def bytes_reproducible() -> bool:
    """Whether retraining here must give the shipped checkpoint's bytes."""
    return cpu_vendor() == RECORDED_VENDOR
