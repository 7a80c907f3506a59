//! What the dashboard shows: the runs and studies found under the directories it was given,
//! looked up again on every request, so runs started after the dashboard appear by
//! themselves. A directory that holds neither is a problem shown on the page, not an exit.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// How deep below a given directory runs and studies are looked for (`runs/<name>/`,
/// `runs/sweeps/<name>/`, …).
const MAX_DEPTH: usize = 3;

/// The runs and studies under the dashboard's directories.
#[derive(Debug, Default)]
pub struct Catalog {
    pub runs: Vec<PathBuf>,
    pub studies: Vec<PathBuf>,
    pub problems: Vec<Problem>,
}

/// Something the dashboard cannot show, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub path: String,
    pub error: String,
}

/// A run directory holds `config.toml`; a study directory holds `study.db`.
pub fn is_run(dir: &Path) -> bool {
    dir.join("config.toml").is_file()
}

pub fn is_study(dir: &Path) -> bool {
    dir.join("study.db").is_file()
}

impl Catalog {
    /// Looks through `roots`.
    pub fn scan(roots: &[PathBuf]) -> Catalog {
        let mut catalog = Catalog::default();
        for root in roots {
            if !root.is_dir() {
                catalog.problems.push(Problem {
                    path: root.display().to_string(),
                    error:
                        "no such directory: pass a run directory (runs/<name>), a study directory or a folder of them"
                            .into(),
                });
                continue;
            }
            let found = catalog.runs.len() + catalog.studies.len();
            catalog.walk(root, 0);
            if catalog.runs.len() + catalog.studies.len() == found {
                catalog.problems.push(Problem {
                    path: root.display().to_string(),
                    error: format!(
                        "not a run directory (no config.toml) nor a study (no study.db), and none below it \
                         within {MAX_DEPTH} levels: pass the directory `shoal train --out` or `shoal tune --out` wrote"
                    ),
                });
            }
        }
        catalog
    }

    fn walk(&mut self, dir: &Path, depth: usize) {
        // A study's trials are runs; they are shown on the study's page.
        if is_study(dir) {
            self.studies.push(dir.to_path_buf());
            return;
        }
        if is_run(dir) {
            self.runs.push(dir.to_path_buf());
            return;
        }
        if depth >= MAX_DEPTH {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        children.sort();
        for child in children {
            self.walk(&child, depth + 1);
        }
    }

    /// The run `id` names, if the catalog holds it: pages ask by path, and only paths found
    /// by the scan are read (nothing else on the machine can be asked for).
    pub fn run(&self, id: &str) -> Option<&Path> {
        self.runs.iter().find(|p| p.to_string_lossy() == id).map(PathBuf::as_path)
    }

    pub fn study(&self, id: &str) -> Option<&Path> {
        self.studies.iter().find(|p| p.to_string_lossy() == id).map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_runs_and_studies_and_names_what_is_neither() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs/a");
        let study = dir.path().join("runs/study");
        let empty = dir.path().join("empty");
        for d in [&run, &study.join("trials/trial-0000"), &empty] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(run.join("config.toml"), "algo = \"ppo\"").unwrap();
        std::fs::write(study.join("study.db"), "").unwrap();
        std::fs::write(study.join("trials/trial-0000/config.toml"), "").unwrap();
        let catalog = Catalog::scan(&[dir.path().join("runs"), empty.clone(), dir.path().join("missing")]);
        assert_eq!(catalog.runs, vec![run.clone()], "the study's trial is not listed as a run");
        assert_eq!(catalog.studies, vec![study]);
        assert_eq!(catalog.problems.len(), 2);
        assert!(catalog.problems[0].error.contains("not a run directory"), "{:?}", catalog.problems);
        assert!(catalog.problems[1].error.contains("no such directory"), "{:?}", catalog.problems);
        assert_eq!(catalog.run(&run.to_string_lossy()), Some(run.as_path()));
        assert_eq!(catalog.run("/etc"), None);
    }
}
