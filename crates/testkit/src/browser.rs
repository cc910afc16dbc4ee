//! A real headless Chromium driven over WebDriver (Debian's `chromium` + `chromium-driver`),
//! and a recording proxy that keeps every request line, header and response body the browser
//! exchanged with the server, so tests can assert what the page received (security headers on
//! every response, no secret anywhere, no token in a request line).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long a wait for something on the page may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The Chromium binary and its WebDriver (Debian's paths; `CHROMIUM` / `CHROMEDRIVER` override).
fn binaries() -> (String, String) {
    (
        std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    )
}

/// A headless Chromium session; dropping it ends chromedriver (and the browser with it).
pub struct Chrome {
    /// The WebDriver client.
    pub client: Client,
    /// chromedriver, killed on drop.
    driver: Child,
    /// The browser profile, removed on drop (nothing survives the test).
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts chromedriver on a free port and a headless browser at 1280×900.
    pub async fn start() -> Result<Self> {
        let (chromium, chromedriver) = binaries();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("starting {chromedriver} (apt-get install chromium-driver)")
            })?;
        let profile = tempfile::tempdir()?;
        let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--hide-scrollbars", "--lang=en-US", "--force-device-scale-factor=1",
                         format!("--user-data-dir={}", profile.path().display())],
            }
        }))?;
        let url = format!("http://127.0.0.1:{port}");
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            let attempt = ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() > end => {
                    bail!("no WebDriver session: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Resizes the viewport to `width`×`height` CSS pixels (the window is grown until the
    /// viewport, not the outer window, has that size).
    pub async fn viewport(&self, width: u32, height: u32) -> Result<()> {
        self.client.set_window_size(width, height).await?;
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await?;
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(0) as u32,
            inner[1].as_u64().unwrap_or(0) as u32,
        );
        let (dw, dh) = (width.saturating_sub(iw), height.saturating_sub(ih));
        if dw > 0 || dh > 0 {
            self.client.set_window_size(width + dw, height + dh).await?;
        }
        Ok(())
    }

    /// Runs `script` in the page and returns its value.
    pub async fn js(&self, script: &str) -> Result<Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// The id of the wizard screen shown now.
    pub async fn screen(&self) -> Result<String> {
        let v = self
            .js("const s=[...document.querySelectorAll('main > section')].find(s=>!s.hidden);return s?s.id:''")
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until screen `id` is shown; fails with the screen and its text otherwise.
    pub async fn wait_screen(&self, id: &str) -> Result<()> {
        self.wait_screen_for(id, PATIENCE).await
    }

    /// [`Chrome::wait_screen`] with its own limit.
    pub async fn wait_screen_for(&self, id: &str, limit: Duration) -> Result<()> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let now = self.screen().await?;
            if now == id {
                return Ok(());
            }
            if tokio::time::Instant::now() > end {
                let text = self.text("main").await.unwrap_or_default();
                bail!("waited for screen {id}, still on {now}: {text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `check` (a JS expression) is truthy.
    pub async fn wait_js(&self, check: &str, what: &str) -> Result<()> {
        self.wait_js_for(check, what, PATIENCE).await
    }

    /// [`Chrome::wait_js`] with its own limit.
    pub async fn wait_js_for(&self, check: &str, what: &str, limit: Duration) -> Result<()> {
        let end = tokio::time::Instant::now() + limit;
        loop {
            if self
                .js(&format!("return !!({check})"))
                .await?
                .as_bool()
                .unwrap_or(false)
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > end {
                let text = self.text("main").await.unwrap_or_default();
                bail!("waited for {what}: {text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String> {
        Ok(self.client.find(Locator::Css(css)).await?.text().await?)
    }

    /// Whether the element with id `id` is disabled.
    pub async fn disabled(&self, id: &str) -> Result<bool> {
        Ok(self
            .js(&format!("return document.getElementById('{id}').disabled"))
            .await?
            .as_bool()
            .unwrap_or(false))
    }

    /// What has the keyboard focus: `section-id/tag/element-id`.
    pub async fn focus(&self) -> Result<String> {
        let v = self
            .js(
                "const a=document.activeElement;const s=a&&a.closest('section');\
                 return (s?s.id:'')+'/'+a.tagName.toLowerCase()+'/'+(a.id||'')",
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Clicks the element with id `id`.
    pub async fn click(&self, id: &str) -> Result<()> {
        self.client
            .find(Locator::Id(id))
            .await?
            .click()
            .await
            .with_context(|| format!("clicking #{id}"))?;
        Ok(())
    }

    /// Replaces the value of input `id` by typing `text` (real key events).
    pub async fn type_into(&self, id: &str, text: &str) -> Result<()> {
        let e = self.client.find(Locator::Id(id)).await?;
        e.clear().await?;
        e.send_keys(text).await?;
        Ok(())
    }

    /// Presses keys on the focused element (e.g. `"\u{E004}"` Tab, `"\u{E007}"` Enter).
    pub async fn keys(&self, keys: &str) -> Result<()> {
        let e = self.client.active_element().await?;
        e.send_keys(keys).await?;
        Ok(())
    }

    /// Writes a PNG of the viewport to `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let png = self.client.screenshot().await?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Full-page PNG at `width`: the viewport is grown to the page's height for the shot,
    /// then put back.
    pub async fn screenshot_full(
        &self,
        dir: &Path,
        name: &str,
        width: u32,
        height: u32,
    ) -> Result<PathBuf> {
        self.viewport(width, height).await?;
        let h = self
            .js("return Math.ceil(document.documentElement.scrollHeight)")
            .await?
            .as_u64()
            .unwrap_or(u64::from(height)) as u32;
        self.viewport(width, h.max(height)).await?;
        let path = self.screenshot(dir, name).await;
        self.viewport(width, height).await?;
        path
    }

    /// Runs axe-core (`axe_js`, the vendored `axe.min.js`) on the page; the serious and
    /// critical violations as `id: help (targets)` lines.
    pub async fn axe(&self, axe_js: &str) -> Result<Vec<String>> {
        self.js(&format!("{axe_js}\n;return typeof axe")).await?;
        let r = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')')))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await?;
        Ok(serde_json::from_value(r)?)
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) -> Result<()> {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
        Ok(())
    }
}

/// One request and response seen by the [`RecordingProxy`].
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `METHOD /path?query`, as on the wire.
    pub request_line: String,
    /// The request headers, `name: value` lines.
    pub request_headers: Vec<(String, String)>,
    /// The HTTP status.
    pub status: u16,
    /// The response headers (lower-case names).
    pub response_headers: Vec<(String, String)>,
    /// The response body as received so far (streams keep growing).
    pub body: Arc<Mutex<Vec<u8>>>,
}

impl Exchange {
    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body received so far, as text.
    pub fn body_text(&self) -> String {
        let b = self.body.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&b).into_owned()
    }
}

/// A reverse proxy on `127.0.0.1:0` in front of an HTTP server that records every exchange
/// (the browser's network log, from the outside) and can cut the answers in flight, as a
/// network loss does.
pub struct RecordingProxy {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Everything exchanged so far.
    log: Arc<Mutex<Vec<Exchange>>>,
    /// Bumped by [`RecordingProxy::cut`]: every answer still streaming then breaks off.
    cuts: Arc<tokio::sync::watch::Sender<u64>>,
    /// The serving task.
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    target: SocketAddr,
    client: HttpClient<HttpConnector, Body>,
    log: Arc<Mutex<Vec<Exchange>>>,
    cuts: Arc<tokio::sync::watch::Sender<u64>>,
}

/// An answer's body that ends with an error when the proxy is cut: the browser sees the
/// connection break in the middle of the response (a stream's events stop, a network error).
struct Cuttable {
    /// The server's body.
    inner: Body,
    /// Ready once the proxy is cut after this answer began.
    cut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl http_body::Body for Cuttable {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            let cut = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut by the test");
            return std::task::Poll::Ready(Some(Err(axum::Error::new(cut))));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }
}

impl RecordingProxy {
    /// Starts a proxy for the server at `target`.
    pub async fn start(target: SocketAddr) -> Result<Self> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let cuts = Arc::new(tokio::sync::watch::Sender::new(0));
        let state = ProxyState {
            target,
            client: HttpClient::builder(TokioExecutor::new()).build_http(),
            log: log.clone(),
            cuts: cuts.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let (addr, task) = crate::http::serve(app).await?;
        let url = format!("http://{addr}");
        Ok(Self {
            url,
            log,
            cuts,
            task,
        })
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A network loss: every answer still streaming breaks off now; later requests go
    /// through again.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(s): State<ProxyState>, mut req: Request) -> Response {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let request_line = format!("{} {pq}", req.method());
    let request_headers = headers(req.headers());
    if let Ok(uri) = format!("http://{}{pq}", s.target).parse() {
        *req.uri_mut() = uri;
    }
    let res = match s.client.request(req).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = Response::new(Body::from(format!("proxy: {e}")));
            *r.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
            return r;
        }
    };
    let body = Arc::new(Mutex::new(Vec::new()));
    s.log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Exchange {
            request_line,
            request_headers,
            status: res.status().as_u16(),
            response_headers: headers(res.headers()),
            body: body.clone(),
        });
    let (parts, incoming) = res.into_parts();
    let teed = incoming.map_frame(move |f| {
        if let Some(d) = f.data_ref() {
            body.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(d);
        }
        f
    });
    let mut cuts = s.cuts.subscribe();
    cuts.borrow_and_update();
    let cut = Box::pin(async move {
        if cuts.changed().await.is_err() {
            // The proxy is gone: never cut.
            std::future::pending::<()>().await;
        }
    });
    let body = Cuttable {
        inner: Body::new(teed),
        cut,
    };
    Response::from_parts(parts, Body::new(body))
}

fn headers(h: &axum::http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
