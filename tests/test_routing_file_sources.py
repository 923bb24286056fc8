"""Reading what a function's image is built from: layers, image directories with their
Dockerfile, and the code root those paths (and ``code``) must lie inside."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgelambda.errors import RoutingConfigError
from edgelambda.routing_file import load_routing, parse_routing
from tests.routing_tables import BASE_DIR, parse

# --- layers ------------------------------------------------------------------------------------


def test_layers_resolve_like_code_and_keep_their_order() -> None:
    table = parse("""\
        functions:
          f:
            handler: app.handler
            layers: [layers/zeta, layers/alpha.zip, /srv/app/shared/common]
        """)

    assert table.functions["f"].layers == (
        BASE_DIR / "layers/zeta",
        BASE_DIR / "layers/alpha.zip",
        BASE_DIR / "shared/common",
    )


def test_a_function_without_layers_has_none() -> None:
    assert parse("functions:\n  f: {handler: a.b}\n").functions["f"].layers == ()


def test_one_layer_may_be_given_without_a_list() -> None:
    table = parse("functions:\n  f: {handler: a.b, layers: layers/one}\n")

    assert table.functions["f"].layers == (BASE_DIR / "layers/one",)


def test_the_defaults_layers_apply_unless_a_function_lists_its_own() -> None:
    table = parse("""\
        defaults:
          layers: [layers/common]
        functions:
          plain: {handler: a.b}
          own: {handler: a.b, layers: [layers/own, layers/common]}
          none: {handler: a.b, layers: []}
          image: {image: "my/image:1"}
        """)

    assert table.functions["plain"].layers == (BASE_DIR / "layers/common",)
    assert table.functions["own"].layers == (BASE_DIR / "layers/own", BASE_DIR / "layers/common")
    assert table.functions["none"].layers == ()
    # As on AWS, an image function brings its own /opt: the defaults' layers are not added.
    assert table.functions["image"].layers == ()


def test_the_image_is_built_from_the_code_and_the_layers() -> None:
    function = parse("functions:\n  f: {handler: a.b, layers: [l1, l2.zip]}\n").functions["f"]

    assert function.source_paths == (
        BASE_DIR / "functions/f",
        BASE_DIR / "l1",
        BASE_DIR / "l2.zip",
    )


LAYER_ERRORS = [
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    layers:\n      - layers/a\n      - [nested]\n",
        6, "functions.f.layers", "must be a path (a directory or a .zip file)", id="not-a-string",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    layers: [3]\n",
        4, "functions.f.layers", "must be a path", id="a-number",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    layers:\n      - layers/a\n      - ../shared\n",
        6, "functions.f.layers",
        "'../shared' must be inside the routing file's directory (/srv/app)", id="dot-dot",
    ),
    pytest.param(
        "defaults:\n  layers: [/opt/layer]\nfunctions:\n  f: {handler: a.b}\n",
        2, "defaults.layers", "'/opt/layer' must be inside", id="defaults-absolute-elsewhere",
    ),
    pytest.param(
        "functions:\n  f:\n    image: my/image:1\n    layers: [layers/a]\n",
        4, "functions.f.layers", "an image function cannot have layers", id="image-function",
    ),
]  # fmt: skip


def test_a_layer_file_must_be_a_zip(tmp_path: Path) -> None:
    (tmp_path / "layers").mkdir()
    (tmp_path / "layers" / "common.tar.gz").write_bytes(b"not a zip")
    (tmp_path / "layers" / "ok.ZIP").write_bytes(b"looked at when built")
    text = "functions:\n  f:\n    handler: a.b\n    layers: [layers/ok.ZIP, layers/common.tar.gz]\n"

    with pytest.raises(RoutingConfigError) as caught:
        parse_routing(text, source="routing.yaml", base_dir=tmp_path)

    assert (caught.value.line, caught.value.key) == (4, "functions.f.layers")
    assert "'layers/common.tar.gz' is a file but not a .zip" in caught.value.problem


def test_a_layer_leaving_through_a_symlink_is_refused(tmp_path: Path) -> None:
    app, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    (app / "layers").mkdir(parents=True)
    elsewhere.mkdir()
    (app / "layers" / "common").symlink_to(elsewhere)
    (app / "routing.yaml").write_text("functions:\n  f: {handler: a.b, layers: [layers/common]}\n")

    with pytest.raises(RoutingConfigError) as caught:
        load_routing(app / "routing.yaml")

    assert (caught.value.line, caught.value.key) == (2, "functions.f.layers")
    assert f"resolves through a symlink to {elsewhere}" in caught.value.problem


# --- image functions ---------------------------------------------------------------------------


def test_an_image_reference_is_kept_as_it_is() -> None:
    function = parse("functions:\n  f: {image: 'registry:5000/team/f:1.2'}\n").functions["f"]

    assert function.image == "registry:5000/team/f:1.2"
    assert function.dockerfile is None


@pytest.mark.parametrize(
    ("image", "directory"),
    [("./images/f", "images/f"), ("../app/images/f", "images/f"), ("/srv/app/img", "img")],
)
def test_an_image_directory_is_built_with_its_dockerfile(image: str, directory: str) -> None:
    function = parse(f"functions:\n  f: {{image: {image}}}\n").functions["f"]

    assert function.image is None  # the gateway builds it
    assert function.code_dir == BASE_DIR / image
    assert function.code_dir.resolve() == BASE_DIR / directory
    assert function.dockerfile == "Dockerfile"
    assert function.handler == ""  # the image's CMD names it
    assert function.source_paths == (function.code_dir,)


def test_dockerfile_names_another_file_in_the_directory() -> None:
    table = parse("""\
        functions:
          f:
            image: ./images/f
            dockerfile: docker/Lambda.Dockerfile
            handler: app.other
        """)

    assert table.functions["f"].dockerfile == "docker/Lambda.Dockerfile"
    assert table.functions["f"].handler == "app.other"  # overrides the image's CMD


IMAGE_ERRORS = [
    pytest.param(
        "functions:\n  f:\n    image: my/image:1\n    dockerfile: Dockerfile\n",
        4, "functions.f.dockerfile", "it needs image: ./<directory>", id="dockerfile-reference",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: a.b\n    dockerfile: Dockerfile\n",
        4, "functions.f.dockerfile", "it needs image: ./<directory>", id="dockerfile-code",
    ),
    pytest.param(
        "functions:\n  f:\n    image: ./img\n    dockerfile: ../Dockerfile\n",
        4, "functions.f.dockerfile", "must be a relative path inside the directory",
        id="dockerfile-dot-dot",
    ),
    pytest.param(
        "functions:\n  f:\n    image: ./img\n    dockerfile: /Dockerfile\n",
        4, "functions.f.dockerfile", "must be a relative path", id="dockerfile-absolute",
    ),
    pytest.param(
        "functions:\n  f:\n    image: ../elsewhere\n",
        3, "functions.f.image", "'../elsewhere' must be inside the routing file's directory",
        id="directory-outside",
    ),
    pytest.param(
        "functions:\n  f:\n    image: ./img\n    code: functions/f\n",
        4, "functions.f.code", "takes its files from that directory", id="code-beside",
    ),
]  # fmt: skip


# --- inline code -------------------------------------------------------------------------------


def test_inline_code_is_the_function_s_code() -> None:
    table = parse(
        "functions:\n  f:\n    handler: index.handler\n"
        "    inline_code: |\n      def handler(event, context):\n          return 1\n"
    )

    spec = table.functions["f"]
    assert spec.inline_code == "def handler(event, context):\n    return 1\n"
    assert spec.source_paths == ()  # nothing on disk to watch


INLINE_ERRORS = [
    pytest.param(
        "functions:\n  f:\n    handler: index.handler\n    inline_code: x\n"
        "    code: functions/f\n",
        5, "functions.f.code", "inline_code is the function's code", id="with-code",
    ),
    pytest.param(
        "functions:\n  f:\n    inline_code: x\n",
        3, "functions.f.inline_code", "needs handler: index.<function>", id="no-handler",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: app.handler\n    inline_code: x\n",
        4, "functions.f.inline_code", "is index.py", id="handler-not-index",
    ),
    pytest.param(
        "functions:\n  f:\n    handler: index.handler\n    runtime: nodejs20.x\n"
        "    inline_code: x\n",
        4, "functions.f.runtime", "inline_code is Python", id="not-python",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "key", "problem"), LAYER_ERRORS + IMAGE_ERRORS + INLINE_ERRORS
)
def test_bad_sources_name_line_and_key(text: str, line: int, key: str, problem: str) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        parse(text)

    assert (caught.value.line, caught.value.key) == (line, key)
    assert problem in caught.value.problem


# --- the code root -----------------------------------------------------------------------------


def _sam_like(tmp_path: Path) -> Path:
    """A project whose code lies beside the routing file's directory, as SAM's
    ``CodeUri: ../src`` has it."""
    (tmp_path / "src").mkdir()
    (tmp_path / "layers").mkdir()
    (tmp_path / "images" / "f").mkdir(parents=True)
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "routing.yaml").write_text(
        "functions:\n"
        "  f: {handler: app.handler, code: ../src, layers: [../layers]}\n"
        "  g: {image: ../images/f}\n"
    )
    return deploy / "routing.yaml"


def test_a_code_root_admits_code_beside_the_routing_file(tmp_path: Path) -> None:
    table = load_routing(_sam_like(tmp_path), code_root=tmp_path)

    f, g = table.functions["f"], table.functions["g"]
    assert f.code_dir.resolve() == tmp_path / "src"
    assert f.layers[0].resolve() == tmp_path / "layers"
    assert g.code_dir.resolve() == tmp_path / "images" / "f"


def test_without_a_code_root_the_routing_files_directory_is_the_root(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError) as caught:
        load_routing(_sam_like(tmp_path))

    assert caught.value.line == 2
    assert f"must be inside the routing file's directory ({tmp_path / 'deploy'})" in str(
        caught.value
    )


def test_paths_outside_the_code_root_name_it(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    (root / "routing.yaml").write_text("functions:\n  f: {handler: a.b, code: ../src}\n")

    with pytest.raises(RoutingConfigError) as caught:
        load_routing(root / "routing.yaml", code_root=root)

    assert caught.value.key == "functions.f.code"
    assert f"must be inside the code root ({root}, EDGELAMBDA_CODE_ROOT)" in caught.value.problem


def test_a_relative_code_root_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing = _sam_like(tmp_path)
    monkeypatch.chdir(tmp_path)

    table = load_routing(routing, code_root=Path("."))

    assert table.functions["f"].code_dir.resolve() == tmp_path / "src"


# --- placement ---------------------------------------------------------------------------------


def test_placement_constraints_are_kept_as_swarm_writes_them() -> None:
    table = parse(
        "functions:\n  f:\n    handler: a.b\n"
        "    placement: [node.labels.zone == edge-a, 'node.role!=manager']\n"
    )

    assert table.functions["f"].placement == ("node.labels.zone == edge-a", "node.role!=manager")


def test_a_placement_that_is_not_a_constraint_names_line_and_key() -> None:
    with pytest.raises(RoutingConfigError) as caught:
        parse("functions:\n  f:\n    handler: a.b\n    placement: [edge-a]\n")

    assert (caught.value.line, caught.value.key) == (4, "functions.f.placement")
    assert "is not <attribute> == <value>" in caught.value.problem
