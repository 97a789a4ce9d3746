"""AWS regions: which exist, from the partitions data botocore ships, and what a config may name.

A region is accepted when the installed botocore knows it in the ARN's partition (``us-east-1`` in
``aws``). AWS opens regions faster than an installed botocore learns them, so a region botocore
does not know yet is still accepted, with a warning, when it has the partition's shape and its
name differs from a known region's only in the trailing number (``ap-southeast-9`` next to
``ap-southeast-1``..``7``). Anything else is refused with the allowed values and the closest one,
so a typo such as ``us-eest-1`` never reaches a client that would look for the stream in a region
that does not exist.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass

__all__ = ["RegionCheck", "check_region", "partition_of"]


@dataclass(frozen=True, slots=True)
class _Partition:
    name: str
    pattern: re.Pattern[str]
    regions: tuple[str, ...]

    def geographies(self) -> frozenset[str]:
        """The names of the known regions without their number (``ap-southeast``)."""
        return frozenset(region.rsplit("-", 1)[0] for region in self.regions)


@dataclass(frozen=True, slots=True)
class RegionCheck:
    """The verdict on a region: ``problem`` refuses it, ``warning`` accepts it with a word."""

    problem: str | None = None
    warning: str | None = None


def _botocore_version() -> str:
    import botocore

    return str(botocore.__version__)


@functools.cache
def _partitions() -> dict[str, _Partition]:
    """botocore's partitions and their regions (its ``*-global`` pseudo-regions left out)."""
    from botocore.loaders import create_loader

    loader = create_loader()
    partitions: dict[str, _Partition] = {}
    try:
        for entry in loader.load_data("partitions")["partitions"]:
            regions = tuple(sorted(r for r in entry["regions"] if not r.endswith("-global")))
            partitions[entry["id"]] = _Partition(
                entry["id"], re.compile(entry["regionRegex"]), regions
            )
    except Exception:  # an older botocore: its endpoints data has the same lists
        for entry in loader.load_data("endpoints")["partitions"]:
            regions = tuple(sorted(entry["regions"]))
            partitions[entry["partition"]] = _Partition(
                entry["partition"], re.compile(entry["regionRegex"]), regions
            )
    return partitions


def partition_of(region: str) -> str | None:
    """The partition a known region belongs to, else the one whose region pattern it matches."""
    partitions = _partitions()
    known = next((p.name for p in partitions.values() if region in p.regions), None)
    if known is not None:
        return known
    return next((p.name for p in partitions.values() if p.pattern.match(region)), None)


def check_region(region: str, partition: str | None = None) -> RegionCheck:
    """Whether ``region`` is a region of ``partition`` (of any partition when None)."""
    partitions = _partitions()
    if partition is None:
        partition = partition_of(region) or "aws"
    if partition not in partitions:
        return RegionCheck(
            problem=f"partition {partition!r} is not an AWS partition (allowed: "
            f"{', '.join(partitions)}; as botocore {_botocore_version()} knows them)"
        )
    known = partitions[partition]
    if region in known.regions:
        return RegionCheck()
    owner = next((p.name for p in partitions.values() if region in p.regions), None)
    if owner is not None:
        return RegionCheck(
            problem=f"region {region!r} belongs to partition {owner!r}, not {partition!r} "
            f"(arn:{owner}:...)"
        )
    geography = region.rsplit("-", 1)[0]
    if known.pattern.match(region) and geography in known.geographies():
        siblings = ", ".join(r for r in known.regions if r.rsplit("-", 1)[0] == geography)
        return RegionCheck(
            warning=f"region {region!r} is not one botocore {_botocore_version()} knows; "
            f"accepted as a newer {geography}-N region (known: {siblings}); if it is a typo, "
            "fix it, else upgrade botocore to silence this"
        )
    close = difflib.get_close_matches(region.lower(), known.regions, n=3, cutoff=0.75)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return RegionCheck(
        problem=f"region {region!r} is not an AWS region{hint} (allowed in partition "
        f"{partition!r}, as botocore {_botocore_version()} knows them: "
        f"{', '.join(known.regions)}; or a newer one numbered after these)"
    )
