"""MODEL_REVISION: a hub revision (branch, tag or commit) passed to the download, shown in the model card and /info;
refused with a directory MODEL."""


import pytest

from common.model_card import ModelCard
from common.settings import load_or_exit
from engine.model_source import resolve_model
from engine.runtimes import ModelLoadError
from worker.settings import WorkerSettings


def test_a_revision_of_a_hub_model_is_a_setting_and_empty_means_unset(monkeypatch):
    monkeypatch.setenv("MODEL", "org/model")
    monkeypatch.setenv("MODEL_REVISION", "v1.2")
    assert WorkerSettings().model_revision == "v1.2"
    monkeypatch.setenv("MODEL_REVISION", "")  # compose's `${MODEL_REVISION:-}`
    assert WorkerSettings().model_revision is None


@pytest.mark.parametrize("model", ["/models/mine", "./models/bench", "~/m"])
def test_a_revision_with_a_directory_model_is_refused_at_start_with_the_fix(monkeypatch, capsys, model):
    monkeypatch.setenv("MODEL", model)
    monkeypatch.setenv("MODEL_REVISION", "main")
    with pytest.raises(SystemExit) as info:
        load_or_exit(WorkerSettings)
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        f"invalid settings: MODEL_REVISION=main pins a Hugging Face Hub revision, but MODEL={model} is a local "
        "directory, used as it is: unset MODEL_REVISION, or set MODEL to a hub id (e.g. "
        "MODEL=distilbert-base-uncased-finetuned-sst-2-english)\n")


def test_the_revision_reaches_the_download_and_the_commit_is_known(monkeypatch, tmp_path):
    import huggingface_hub

    calls = []

    def snapshot_download(model, *, revision=None, allow_patterns=None):
        calls.append((model, revision))
        snapshot = tmp_path / f"models--{model.replace('/', '--')}" / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True, exist_ok=True)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    source = resolve_model("org/model", "v1.2")
    assert calls == [("org/model", "v1.2")]
    assert (source.revision, source.commit, source.hub_model) == ("v1.2", "0123abcd", "org/model")
    assert resolve_model("org/model").revision is None and calls[-1] == ("org/model", None)
    with pytest.raises(ModelLoadError, match="MODEL_REVISION=v1 pins a Hugging Face Hub revision"):
        resolve_model(str(tmp_path), "v1")


def test_a_directory_that_is_no_hub_snapshot_has_no_commit(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert (resolve_model(str(tmp_path)).commit, resolve_model(str(tmp_path)).hub_model) == ("", "")


def test_the_commit_travels_in_the_model_card_and_an_older_card_has_none():
    card = ModelCard(model="org/model", fingerprint="f" * 64, labels=("A", "B"), max_tokens=8,
                     default_function="softmax", backend="torch", revision="0123abcd")
    assert ModelCard.from_fields(card.fields()) == card
    older = {k: v for k, v in card.fields().items() if k != "model_revision"}
    assert ModelCard.from_fields(older).revision == ""


def test_info_shows_the_revision(tmp_path):
    from api.catalog import ModelView
    from api.info import info_of
    from api.settings import ApiSettings

    def view(card: ModelCard) -> ModelView:
        return ModelView(cards=(card,), max_batch_size=8, max_batch_tokens=512, workers=1, backends={"torch": 1})

    info = info_of(view(ModelCard("org/model", "f" * 64, ("A", "B"), 8, "softmax", "torch", revision="0123abcd")),
                   ApiSettings(), "m", 1)
    assert info.model_revision == "0123abcd" and info.models[0].model_revision == "0123abcd"
    directory = ModelCard("/models/x", "f" * 64, ("A", "B"), 8, "softmax", "torch")
    assert info_of(view(directory), ApiSettings(), "m", 1).model_revision is None
