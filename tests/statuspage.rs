//! `dbctl status --all --html DIR`: the static status page, opened in headless
//! Chromium (Debian's package): the DOM after its script ran (rows, cells, sorting by
//! `#sort=KEY`) and a screenshot.

use std::path::Path;
use std::process::Command;

use crate::support::World;

/// Chromium's DOM of `page` (after its scripts ran).
fn dom(page: &Path, fragment: &str) -> String {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}{fragment}", page.display()))
        .output()
        .expect("chromium is installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table rows' `data-name`s in DOM order.
fn row_order(dom: &str) -> Vec<String> {
    let body = &dom[dom.find("<tbody>").unwrap()..dom.find("</tbody>").unwrap()];
    body.split("<tr data-name=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// The `<tr>` of `name` in `dom`.
fn row<'d>(dom: &'d str, name: &str) -> &'d str {
    let start = dom.find(&format!("<tr data-name=\"{name}\"")).unwrap();
    let end = start + dom[start..].find("</tr>").unwrap();
    &dom[start..end]
}

#[test]
fn the_status_page_lists_every_database_with_backups_drills_and_maintenance() {
    let world = World::new();
    for (name, size) in [("sessions", "1"), ("carts", "2")] {
        world
            .dbctl(&[
                "create",
                "--type",
                "redis",
                "--version",
                "7.0",
                "--size",
                size,
                name,
            ])
            .ok();
    }
    world
        .dbctl(&["create", "--type", "postgresql", "--size", "1", "orders"])
        .ok();
    // Backups go to a directory by default (PostgreSQL does not archive WAL there:
    // see `orders` below).
    let config = world.repo.join("etc/dbctl.yml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("defaults:\n", "defaults:\n  backup_store: here\n")
            + &format!(
                "backup_stores:\n  here:\n    kind: dir\n    path: {}\n",
                world.dir.path().join("backups").display()
            ),
    )
    .unwrap();
    world.git(&["commit", "-qam", "test: a backup store"]);
    // sessions: backed up and drilled; orders: a restart-class change waiting for a
    // window that is not now; carts: nothing.
    world.dbctl(&["backup", "sessions", "--store", "here"]).ok();
    world.dbctl(&["backup", "verify", "sessions"]).ok();
    let spec = world.repo.join("etc/databases/orders.yml");
    let text = std::fs::read_to_string(&spec).unwrap();
    // An hour of the day some hours from now (never midnight-crossing).
    let hour = (jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .hour()
        + 6)
        % 22;
    std::fs::write(
        &spec,
        text.replace("parameters: {}", "parameters:\n  max_connections: \"150\"")
            + "backup:\n  archive_wal: false\n"
            + &format!(
                "maintenance:\n  window: \"daily {hour:02}:00-{:02}:00 UTC\"\n",
                hour + 1
            ),
    )
    .unwrap();
    world.git(&["commit", "-qam", "orders: more connections, in the window"]);

    let dir = world.dir.path().join("public");
    let report = world
        .dbctl(&[
            "status",
            "--all",
            "--html",
            dir.to_str().unwrap(),
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(report["databases"].as_array().unwrap().len(), 3, "{report}");
    let page = dir.join("index.html");
    assert_eq!(report["html"], page.display().to_string());

    let dom_by_name = dom(&page, "#sort=name");
    assert_eq!(row_order(&dom_by_name), ["carts", "orders", "sessions"]);
    assert!(
        dom_by_name.contains("data-key=\"name\" aria-sort=\"ascending\""),
        "the page's script did not sort"
    );
    let dom = dom(&page, "#sort=-name");
    assert_eq!(row_order(&dom), ["sessions", "orders", "carts"]);
    for name in ["sessions", "orders", "carts"] {
        assert!(
            row(&dom, name).contains("class=\"state up\""),
            "{}",
            row(&dom, name)
        );
    }
    let sessions = row(&dom, "sessions");
    assert!(
        sessions.contains(" h ago") && sessions.contains("here"),
        "{sessions}"
    );
    assert!(sessions.contains("passed ("), "{sessions}");
    let carts = row(&dom, "carts");
    assert!(
        carts.contains(">none<") && carts.contains(">never<"),
        "{carts}"
    );
    assert!(carts.contains("/ 2.0 GiB"), "{carts}");
    let orders = row(&dom, "orders");
    assert!(
        orders.contains("parameters.max_connections") && orders.contains("1 at "),
        "{orders}"
    );
    // The chart: a used bar for each database, an age bar only where there is a backup.
    assert_eq!(dom.matches("class=\"used\"").count(), 3);
    assert_eq!(dom.matches("<rect class=\"age\"").count(), 1);

    let shot = world.dir.path().join("page.png");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,700",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    for name in ["sessions", "carts", "orders"] {
        world
            .dbctl(&["delete", name, "--yes", "--skip-final-backup"])
            .ok();
    }
}
