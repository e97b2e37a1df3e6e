"""``python -m benchmarks``: run every benchmark and rewrite benchmarks/RESULTS.md."""

from __future__ import annotations

from pathlib import Path

from benchmarks import gcr_step, pca_stream
from benchmarks.common import in_subprocess, machine

OUT = Path(__file__).with_name("RESULTS.md")


def pca_section() -> list[str]:
    """Streaming PCA vs scikit-learn vs the float32 matmul floor."""
    mod = "benchmarks.pca_stream"
    base = in_subprocess(mod, "baseline")
    floor = in_subprocess(mod, "floor")
    rows = {
        "float32 XᵀX (floor)": floor,
        "StreamingMoments float64 + eigh": in_subprocess(mod, "streaming"),
        "sklearn PCA(svd_solver='full')": in_subprocess(mod, "sklearn_pca", solver="full"),
        "sklearn PCA(svd_solver='covariance_eigh')": in_subprocess(
            mod, "sklearn_pca", solver="covariance_eigh"
        ),
    }
    stream_evr = rows["StreamingMoments float64 + eigh"]["evr"]
    lines = [
        f"## Streaming PCA, {pca_stream.N:,} × {pca_stream.D} float32, "
        f"{pca_stream.THREADS} threads",
        "",
        f"Floor: {floor['gflops']:.0f} GFLOP/s measured on this CPU (float32 matmul). "
        "Peak memory is each process's maximum RSS minus that of a process holding only the data.",
        "",
        r"| method | time (s) | × floor | peak MiB above data | max \|EVR − ours\| (top 10) |",
        "|---|---|---|---|---|",
    ]
    base_rss = base["peak_rss_mib"]
    for name, r in rows.items():
        evr = r.get("evr")
        diff = max(abs(a - b) for a, b in zip(evr, stream_evr, strict=True)) if evr else None
        lines.append(
            f"| {name} | {r['seconds']:.3f} | {r['seconds'] / floor['seconds']:.1f} | "
            f"{r['peak_rss_mib'] - base_rss:.0f} | {'' if diff is None else f'{diff:.1e}'} |"
        )
    return lines


def main() -> None:
    """Run the benchmarks and write RESULTS.md."""
    sections = [pca_section(), gcr_step.section()]
    text = [
        "# Benchmarks",
        "",
        "Produced by `make benchmarks` (`python -m benchmarks`); rerun to refresh.",
        f"Machine: {machine()}.",
        "",
    ]
    for sec in sections:
        text += [*sec, ""]
    OUT.write_text("\n".join(text))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
