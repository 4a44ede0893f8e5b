//! `tend doc`: pages built from the recipes themselves. The shipped recipes' HTML is
//! rendered by headless Chromium and every link of every page must resolve; a folder
//! with a module of its own, a secret, a step rollback cannot undo and a test file
//! shows each of them where a reader looks; text from a recipe cannot inject markup;
//! bad input ends in the documented exit codes.

mod support;

use std::path::{Path, PathBuf};

use support::World;

fn dump_dom(page: &Path) -> String {
    support::dump_dom(&format!("file://{}", page.display()))
}

fn repo_recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes")
}

/// Every `href="…"` of a page.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_shipped_recipes_render_in_chromium_and_every_link_resolves() {
    let w = World::new();
    let out = w.dir.path().join("site");
    let r = w.tend(&[
        "doc",
        repo_recipes().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    r.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(v["kind"], "doc");
    let recipes = v["recipes"].as_array().unwrap();
    assert!(recipes.iter().any(|n| n == "log-rotate"), "{v}");
    assert!(v["modules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "logrotate"));

    let pages = v["pages"].as_array().unwrap();
    assert_eq!(
        pages.len(),
        1 + recipes.len() + v["modules"].as_array().unwrap().len()
    );
    for page in pages {
        let page = Path::new(page.as_str().unwrap());
        let dom = dump_dom(page);
        assert!(
            !dom.contains("<script"),
            "no JavaScript in {}",
            page.display()
        );
        for href in links(&dom) {
            let file = href.split('#').next().unwrap();
            assert!(
                !href.contains("://") && out.join(file).is_file(),
                "{}: link {href} leads nowhere",
                page.display()
            );
        }
    }
    let dom = dump_dom(&out.join("recipe-log-rotate.html"));
    // Every parameter the recipe declares, with its comment.
    let show = w.tend(&[
        "show",
        repo_recipes().join("log-rotate.rhai").to_str().unwrap(),
        "--json",
    ]);
    let shown: serde_json::Value = serde_json::from_str(show.stdout.trim()).unwrap();
    for p in shown["params"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        assert!(
            dom.contains(&format!("<code>{name}</code>")),
            "parameter {name}"
        );
    }
    assert!(dom.contains("<code>fs::rename</code>") && dom.contains("renamed back"));
    // The one step log-rotate cannot undo, named with its line.
    for step in shown["irreversible_steps"].as_array().unwrap() {
        let line = step.as_str().unwrap().split(": ").next().unwrap();
        assert!(dom.contains(line), "irreversible step {line} not shown");
    }
    assert!(dom.contains("module-logrotate.html"));
}

/// A folder of one recipe that imports a module of its own, with a secret, a command
/// without undo, markup in its header, and a test file.
fn folder(w: &World) -> PathBuf {
    let dir = w.dir.path().join("recipes");
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    std::fs::write(
        dir.join("helpers.rhai"),
        "//! Helpers for <b>greeting</b>.\n\n/// Write a greeting to `path`.\nfn greet(path) {\n    fs::file(path, \"hi\\n\")\n}\n\nprivate fn hidden() { 1 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("hello.rhai"),
        "//! Say hello <script>alert(1)</script> to a file.\n//! scope: /tmp/**\n\nimport \"helpers\" as h;\n\nlet p = params(#{\n    path: \"/tmp/hello.txt\",   // where the greeting goes\n    token: secret(),            // API token for the notice\n});\nh::greet(p.path);\nsh(\"true\", #{in_scope: true});\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("tests/hello.test.rhai"),
        "test(\"greets\", #{ fixture: #{ \"tmp/other\": \"x\" }, params: #{ token: \"env:HOME\" }, idempotent: false }, |t| {\n    t.expect_file(\"tmp/hello.txt\", \"hi\\n\");\n});\n",
    )
    .unwrap();
    dir
}

#[test]
fn markdown_pages_show_module_secret_irreversible_step_and_tests() {
    let w = World::new();
    let dir = folder(&w);
    let out = w.dir.path().join("md");
    let r = w.tend(&[
        "doc",
        dir.to_str().unwrap(),
        "--format",
        "markdown",
        "--out",
        out.to_str().unwrap(),
    ]);
    r.assert_code(0);
    assert!(
        r.stdout.contains("1 recipe(s), 1 module(s)"),
        "{}",
        r.stdout
    );
    // The imported file is a module, not a recipe.
    assert!(!out.join("recipe-helpers.md").exists());
    let module = std::fs::read_to_string(out.join("module-helpers.md")).unwrap();
    assert!(module.contains("### `greet(path)`") && module.contains("Write a greeting"));
    assert!(
        !module.contains("hidden"),
        "private functions stay out:\n{module}"
    );

    let page = std::fs::read_to_string(out.join("recipe-hello.md")).unwrap();
    assert!(
        page.contains("| `path` | string | `/tmp/hello.txt` | where the greeting goes |"),
        "{page}"
    );
    assert!(
        page.contains("| `token` | secret | (secret: never shown) |"),
        "{page}"
    );
    assert!(page.contains("Writes: /tmp/**"));
    assert!(page.contains("`sh` | conditional"), "{page}");
    assert!(
        page.contains("hello.rhai:11: sh(\"true\", #{in_scope: true});"),
        "{page}"
    );
    assert!(page.contains("`fs::file` | reversible") && page.contains("helpers.rhai:5"));
    assert!(
        page.contains("1 case(s) in") && page.contains("(not run)"),
        "{page}"
    );
    assert!(page.contains("never vetted"), "{page}");

    // --test runs them: the case passes (the sh step is `true`).
    let r = w.tend(&[
        "doc",
        dir.to_str().unwrap(),
        "--format",
        "markdown",
        "--out",
        out.to_str().unwrap(),
        "--test",
    ]);
    r.assert_code(0);
    let page = std::fs::read_to_string(out.join("recipe-hello.md")).unwrap();
    assert!(
        page.contains("1 passed, 0 failed") && page.contains("- ok greets"),
        "{page}"
    );
}

#[test]
fn html_escapes_what_recipes_say() {
    let w = World::new();
    let dir = folder(&w);
    let out = w.dir.path().join("html");
    w.tend(&["doc", dir.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .assert_code(0);
    let page = std::fs::read_to_string(out.join("recipe-hello.html")).unwrap();
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{page}"
    );
    let dom = dump_dom(&out.join("recipe-hello.html"));
    assert!(!dom.contains("<script"));
    assert!(
        dom.contains("Say hello &lt;script&gt;alert(1)&lt;/script&gt; to a file."),
        "{dom}"
    );
    let module = std::fs::read_to_string(out.join("module-helpers.html")).unwrap();
    assert!(module.contains("&lt;b&gt;greeting&lt;&#x2f;b&gt;") && !module.contains("<b>"));
}

#[test]
fn bad_input_gets_the_documented_exit_codes() {
    let w = World::new();
    let r = w.tend(&["doc", "no-such-dir"]);
    r.assert_code(66);
    assert!(r.stderr.contains("no-such-dir"), "{}", r.stderr);

    let empty = w.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let r = w.tend(&["doc", empty.to_str().unwrap()]);
    r.assert_code(64);
    assert!(r.stderr.contains("no recipes"), "{}", r.stderr);

    let broken = w.dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("bad.rhai"), "let x = ;\n").unwrap();
    let r = w.tend(&[
        "doc",
        broken.to_str().unwrap(),
        "--out",
        w.dir.path().join("o").to_str().unwrap(),
    ]);
    r.assert_code(65);
    assert!(r.stderr.contains("bad.rhai:1"), "{}", r.stderr);
    assert!(
        !w.dir.path().join("o").exists(),
        "nothing written for a broken folder"
    );

    let r = w.tend(&["doc", ".", "--format", "pdf"]);
    r.assert_code(64);
}
