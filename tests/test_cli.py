"""The command line: user errors are one ``error:`` line (exit 2), bugs keep their traceback, and
``check`` refuses a full profile with unpinned inputs, listing every one, before any compute."""

from __future__ import annotations

import copy
import errno
from pathlib import Path

import pytest
import yaml

from subspacelab import registry
from subspacelab.cli import main
from subspacelab.config import ParamsError
from subspacelab.runner import run_step
from tests.fake_study import FAKE, FAKE_PARAMS
from tests.helpers import REPO, make_workspace

LAB = yaml.safe_load((REPO / "params.yaml").read_text())["lab"]

# Every input of the full profiles that has no pin today (params.yaml says why for each).
UNPINNED_TODAY = [
    "cm3.full.data.mmrec.inter_sha256",
    "cm3.full.data.mmrec.image_sha256",
    "cm3.full.data.mmrec.text_sha256",
    "diffumatch.full.data.hf_revision",
    "diveup.full.model.released.diveup_sha256",
    "diveup.full.model.released.naf_sha256",
    "diveup.full.model.backbone_sha256[0]",
    "diveup.full.model.backbone_sha256[1]",
    "diveup.full.model.backbone_sha256[2]",
    "diveup.full.model.backbone_sha256[3]",
    "dsl.full.data.images_sha256",
    "dsl.full.data.labels_sha256",
    "eigenstructures.full.shapenet.archive.sha256",
    "eigenstructures.full.images.archive.sha256",
    "flora.full.data.vtab.sha256",
    "gdl.full.data.molecules.qm9_sha256",
    "gdl.full.data.molecules.molhiv_sha256",
    "gdl.full.data.mnist_rot_sha256",
    "geo_sae.full.data.scene_sha256",
    "grbf_active.full.data.tables_sha256.airfoil",
    "grbf_active.full.data.tables_sha256.yacht",
    "grbf_active.full.data.tables_sha256.wdbc",
    "grbf_active.full.data.tables_sha256.ionosphere",
    "hiponet.full.data.cohort.checksums.pc.pkl",
    "hiponet.full.data.cohort.checksums.labels.npy",
    "koopman_ib.full.data.cylinder_sha256",
    "mhs_vm.full.data.url",
    "mhs_vm.full.data.sha256",
    "molrg_diffusion.full.jacobian.hf_revision",
    "molrg_diffusion.full.jacobian.weights_sha256",
    "optfs.full.data.real.log.sha256",
    "plato.full.data.points_sha256",
    "plato.full.data.captions_sha256",
    "plato.full.data.labels_sha256",
    "plato.full.text.revision",
    "pointcloud_clustering.full.data.kitti.velodyne_sha256",
    "pointcloud_clustering.full.data.kitti.labels_sha256",
    "s2cag.full.data.planetoid_sha256.ind.pubmed.allx",
    "shapesplat.full.data.hf_revision",
    "subspace_rerouting.full.data.prompts.sha256",
    "subspace_rerouting.full.model.hf.revision",
    "subspacead.full.features.hf_revision",
    "task_zoo.full.data.vision.checksums.Partitions.zip",
    "treesynth.full.generator.revision",
    "ulsam.full.data.finegrained.checksums.images.tar",
    "ulsam.full.data.finegrained.checksums.lists.tar",
    "unified_embedding.full.data.log.sha256",
    "vsae.full.data.revision",
    "vsae.full.data.text_sha256",
    "xfactors.full.data.dsprites_sha256",
]


def _full_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["lab"]["profile"] = "full"
    return params


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_check_lists_every_unpinned_input_of_the_full_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = make_workspace(tmp_path / "ws", _full_params())
    assert main(["check"], root=ws) == 2
    err = capsys.readouterr().err
    listed = [line.strip().split(":")[0] for line in err.splitlines() if line.startswith("  ")]
    assert listed == UNPINNED_TODAY
    assert f"{len(UNPINNED_TODAY)} input(s) of the full profile are not pinned" in err
    assert not (ws / "data").exists() and not (ws / "models").exists()


def test_check_passes_once_every_input_is_pinned(tmp_path: Path) -> None:
    params = _full_params()
    params["flora"]["full"]["data"]["vtab"]["sha256"] = "0" * 64
    params["geo_sae"]["full"]["data"]["scene_sha256"] = "0" * 64
    params["s2cag"]["full"]["data"]["planetoid"] = ["cora", "citeseer"]
    params["subspacead"]["full"]["features"]["hf_revision"] = "0" * 40
    params["task_zoo"]["full"]["data"]["vision"]["checksums"]["Partitions.zip"] = "sha256:00"
    params["unified_embedding"]["full"]["data"]["log"]["sha256"] = "0" * 64
    params["optfs"]["full"]["data"]["real"]["log"]["sha256"] = "0" * 64
    params["cm3"]["full"]["data"]["mmrec"].update(
        inter_sha256="0" * 64, image_sha256="0" * 64, text_sha256="0" * 64
    )
    sha, rev = "0" * 64, "0" * 40
    params["dsl"]["full"]["data"].update(images_sha256=sha, labels_sha256=sha)
    params["gdl"]["full"]["data"]["mnist_rot_sha256"] = sha
    params["gdl"]["full"]["data"]["molecules"].update(qm9_sha256=sha, molhiv_sha256=sha)
    params["mhs_vm"]["full"]["data"].update(url="https://example.org/isic2018.zip", sha256=sha)
    params["plato"]["full"]["data"].update(
        points_sha256=sha, captions_sha256=sha, labels_sha256=sha
    )
    params["plato"]["full"].setdefault("text", {})["revision"] = rev
    params["subspace_rerouting"]["full"]["data"]["prompts"]["sha256"] = sha
    params["subspace_rerouting"]["full"]["model"]["hf"]["revision"] = rev
    params["treesynth"]["full"]["generator"]["revision"] = rev
    params["vsae"]["full"]["data"].update(revision=rev, text_sha256=sha)
    fg = params["ulsam"]["full"]["data"]["finegrained"]["checksums"]
    fg.update({"images.tar": "sha256:" + "0" * 64, "lists.tar": "sha256:" + "0" * 64})
    params["grbf_active"]["full"]["data"]["tables_sha256"] = {
        t: "0" * 64 for t in ("airfoil", "yacht", "wdbc", "ionosphere")
    }
    params["koopman_ib"]["full"]["data"]["cylinder_sha256"] = "0" * 64
    params["xfactors"]["full"]["data"]["dsprites_sha256"] = "0" * 64
    params["eigenstructures"]["full"]["shapenet"]["archive"]["sha256"] = sha
    params["eigenstructures"]["full"]["images"]["archive"]["sha256"] = sha
    params["molrg_diffusion"]["full"]["jacobian"].update(hf_revision=rev, weights_sha256=sha)
    params["diffumatch"]["full"]["data"]["hf_revision"] = rev
    params["shapesplat"]["full"]["data"]["hf_revision"] = rev
    params["diveup"]["full"]["model"]["released"].update(diveup_sha256=sha, naf_sha256=sha)
    params["diveup"]["full"]["model"]["backbone_sha256"] = [sha] * 4
    params["hiponet"]["full"]["data"]["cohort"]["checksums"] = {"pc.pkl": sha, "labels.npy": sha}
    params["pointcloud_clustering"]["full"]["data"]["kitti"].update(
        velodyne_sha256=sha, labels_sha256=sha
    )
    assert main(["check"], root=make_workspace(tmp_path / "ws", params)) == 0
    # the mini profile fetches nothing unpinned
    assert (
        main(
            ["check"],
            root=make_workspace(
                tmp_path / "mini", yaml.safe_load((REPO / "params.yaml").read_text())
            ),
        )
        == 0
    )


def test_a_stage_refuses_unpinned_inputs_before_any_compute(tmp_path: Path) -> None:
    params = _full_params()
    ws = make_workspace(tmp_path / "ws", {"lab": params["lab"], "s2cag": params["s2cag"]})
    with pytest.raises(
        ParamsError, match=r"s2cag\.full\.data\.planetoid_sha256\.ind\.pubmed\.allx"
    ):
        run_step(ws, "s2cag", "graphs")
    assert sorted(p.name for p in ws.iterdir()) == ["params.yaml"]  # nothing fetched or staged


@pytest.fixture
def fake_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(registry, "_REGISTRY", {"fake": FAKE})
    return make_workspace(tmp_path / "ws", {"lab": LAB, "fake": FAKE_PARAMS})


def _failing(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    def run(ctx: registry.StepContext) -> None:
        raise exc

    steps = (registry.Step("download", run, reads=("data",)), *FAKE.steps[1:])
    monkeypatch.setattr(
        registry, "_REGISTRY", {"fake": registry.Study(**{**FAKE.__dict__, "steps": steps})}
    )


@pytest.mark.parametrize("exc", [KeyError("seed 3"), ValueError("bad shape"), TypeError("x")])
def test_a_bug_inside_a_step_keeps_its_traceback(
    fake_ws: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    _failing(exc, monkeypatch)
    with pytest.raises(type(exc)):
        main(["stage", "download", "fake"], root=fake_ws)


def test_user_errors_are_one_line(
    fake_ws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stage", "download", "nosuch"], root=fake_ws) == 2
    assert _error_lines(capsys) == ["error: unknown study 'nosuch'; known: fake"]
    assert main(["stage", "train", "fake"], root=fake_ws) == 2
    assert _error_lines(capsys) == [
        "error: study fake has no step 'train'; steps: download, fit, report"
    ]
    assert main(["stage", "fit", "fake"], root=fake_ws) == 2  # its input is not there yet
    assert "run `dvc repro fake_download` first" in _error_lines(capsys)[0]
    bad = copy.deepcopy(FAKE_PARAMS)
    bad["mini"]["data"]["n"] = 0
    make_workspace(fake_ws, {"lab": LAB, "fake": bad})
    assert main(["stage", "download", "fake"], root=fake_ws) == 2
    assert _error_lines(capsys) == ["error: fake.mini.data.n: got 0; allowed: >= 1"]


def test_a_full_disk_is_one_line(
    fake_ws: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _failing(OSError(errno.ENOSPC, "No space left on device", "x.bin"), monkeypatch)
    assert main(["stage", "download", "fake"], root=fake_ws) == 2
    (line,) = _error_lines(capsys)
    assert line.startswith("error: fake_download: no space left on device while writing x.bin")
