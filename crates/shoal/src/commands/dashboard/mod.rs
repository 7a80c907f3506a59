//! `shoal dashboard`: a live web view of run directories and tuning studies.
//!
//! The server only reads what runs already write — `metrics.csv`, `summary.json`, the cluster
//! status files of embedded and multi-process runs, a study's `study.db` — and answers the page
//! with JSON; the page (HTML, CSS and script compiled into the binary, nothing from a CDN) polls
//! once a second and updates in place. It binds loopback by default; bound elsewhere, every
//! data request must carry the run's token (`?token=` in the page's address).

mod catalog;
mod runs;
mod study;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shoal_dist::Token;

use catalog::{Catalog, Problem};
use runs::{read_cluster, read_run, ClusterView, Metrics, MetricsCache, RunRow};
use study::{read_study, StudyRow, StudyView};

use super::ps::is_loopback;

/// Arguments of `shoal dashboard`.
#[derive(clap::Args)]
pub struct Args {
    /// Run directories, study directories, or folders holding them (searched 3 levels deep).
    #[arg(default_value = "runs")]
    dirs: Vec<PathBuf>,
    /// Address to serve on; port 0 picks a free port (the address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8265")]
    listen: String,
    /// File holding the token pages must carry when --listen is not loopback (default:
    /// $SHOAL_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// What every request handler shares.
struct Dashboard {
    dirs: Vec<PathBuf>,
    /// Required on data requests when serving beyond loopback.
    token: Option<Token>,
    metrics: MetricsCache,
}

pub fn run(args: &Args) -> Result<()> {
    let token = match is_loopback(&args.listen) {
        true => None,
        false => Some(Token::from_file_or_env(args.token_file.as_deref()).with_context(|| {
            format!("{} is reachable from other machines, so pages must carry a token", args.listen)
        })?),
    };
    let dashboard = Arc::new(Dashboard { dirs: args.dirs.clone(), token, metrics: MetricsCache::default() });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(dashboard, &args.listen))
}

async fn serve(dashboard: Arc<Dashboard>, listen: &str) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr: SocketAddr = listener.local_addr()?;
    let api = Router::new()
        .route("/api/overview", get(overview))
        .route("/api/run", get(run_page))
        .route("/api/cluster", get(cluster_page))
        .route("/api/study", get(study_page))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&dashboard), check_token));
    let app = Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", include_str!("assets/index.html"))))
        .route("/app.js", get(|| asset("text/javascript; charset=utf-8", include_str!("assets/app.js"))))
        .route("/style.css", get(|| asset("text/css; charset=utf-8", include_str!("assets/style.css"))))
        .merge(api)
        .with_state(dashboard);
    println!("shoal dashboard listening on http://{addr}/");
    use std::io::Write;
    std::io::stdout().flush()?;
    axum::serve(listener, app).await.context("serving the dashboard")
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Refuses data requests without the token, when one is required.
async fn check_token(State(dashboard): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let Some(token) = &dashboard.token else { return next.run(request).await };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let query = request.uri().query().and_then(|q| {
        q.split('&').find_map(|pair| pair.strip_prefix("token=")).map(|t| decode_query(t).unwrap_or_default())
    });
    match bearer.or(query) {
        Some(given) if token.matches(given.as_bytes()) => next.run(request).await,
        Some(_) => {
            (StatusCode::UNAUTHORIZED, "wrong token: open the page with ?token=<the run's token>").into_response()
        }
        None => (StatusCode::UNAUTHORIZED, "this dashboard needs the run's token: open it with ?token=<token>")
            .into_response(),
    }
}

/// A query value with `%XX` escapes and `+` decoded.
fn decode_query(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        bytes.push(match b {
            b'%' => {
                let hex = [input.next()?, input.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b'+' => b' ',
            b => b,
        });
    }
    String::from_utf8(bytes).ok()
}

/// Runs a file-reading closure off the server's thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, StatusCode> {
    tokio::task::spawn_blocking(f).await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

#[derive(Serialize)]
struct Overview {
    runs: Vec<RunRow>,
    studies: Vec<StudyRow>,
    problems: Vec<Problem>,
}

async fn overview(State(dashboard): State<Arc<Dashboard>>) -> Result<Json<Overview>, StatusCode> {
    blocking(move || {
        let catalog = Catalog::scan(&dashboard.dirs);
        Json(Overview {
            runs: catalog.runs.iter().map(|dir| read_run(dir, &dashboard.metrics).0).collect(),
            studies: catalog.studies.iter().map(|dir| read_study(dir).row).collect(),
            problems: catalog.problems,
        })
    })
    .await
}

#[derive(Deserialize)]
struct Target {
    id: String,
}

/// An answer for a run or study the catalog does not hold.
fn unknown(id: &str) -> (StatusCode, String) {
    (
        StatusCode::NOT_FOUND,
        format!("{id}: not a run or study under this dashboard's directories (it may have been moved or deleted)"),
    )
}

/// The run `id` names, if a scan finds it: its directory, its table line and its metrics
/// (empty when they could not be read; the line says why).
fn found_run(dashboard: &Dashboard, id: &str) -> Result<(PathBuf, RunRow, Metrics), (StatusCode, String)> {
    let catalog = Catalog::scan(&dashboard.dirs);
    let dir = catalog.run(id).ok_or_else(|| unknown(id))?;
    let (row, metrics) = read_run(dir, &dashboard.metrics);
    Ok((dir.to_path_buf(), row, metrics.as_ref().clone().unwrap_or_default()))
}

#[derive(Serialize)]
struct RunPage {
    row: RunRow,
    metrics: Metrics,
    summary: Option<serde_json::Value>,
}

async fn run_page(
    State(dashboard): State<Arc<Dashboard>>,
    Query(target): Query<Target>,
) -> Result<Json<RunPage>, (StatusCode, String)> {
    blocking(move || {
        let (dir, row, metrics) = found_run(&dashboard, &target.id)?;
        let summary = std::fs::read(dir.join("summary.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        Ok(Json(RunPage { row, metrics, summary }))
    })
    .await
    .map_err(|s| (s, String::new()))?
}

#[derive(Serialize)]
struct ClusterPage {
    row: RunRow,
    cluster: ClusterView,
    metrics: Metrics,
}

async fn cluster_page(
    State(dashboard): State<Arc<Dashboard>>,
    Query(target): Query<Target>,
) -> Result<Json<ClusterPage>, (StatusCode, String)> {
    blocking(move || {
        let (dir, row, metrics) = found_run(&dashboard, &target.id)?;
        Ok(Json(ClusterPage { row, cluster: read_cluster(&dir), metrics }))
    })
    .await
    .map_err(|s| (s, String::new()))?
}

async fn study_page(
    State(dashboard): State<Arc<Dashboard>>,
    Query(target): Query<Target>,
) -> Result<Json<StudyView>, (StatusCode, String)> {
    blocking(move || {
        let catalog = Catalog::scan(&dashboard.dirs);
        let dir = catalog.study(&target.id).ok_or_else(|| unknown(&target.id))?;
        Ok(Json(read_study(dir)))
    })
    .await
    .map_err(|s| (s, String::new()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode() {
        assert_eq!(decode_query("runs%2Fa+b").as_deref(), Some("runs/a b"));
        assert_eq!(decode_query("%zz"), None);
    }
}
