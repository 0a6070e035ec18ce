//! Whether the application limits the rate of every request at once: SlowAPI's middleware
//! (`app.add_middleware(SlowAPIMiddleware)`) applies the limiter's `default_limits` to every route, public ones
//! included, so a router needs no limiter of its own.
//!
//! Read from the files that usually build the application (see [`APP_FILE_GLOBS`]).

use std::collections::HashMap;

/// Files that usually build the application object and add its middleware.
pub const APP_FILE_GLOBS: &[&str] = &[
    "**/main.py",
    "**/app.py",
    "**/server.py",
    "**/application.py",
    "**/asgi.py",
];

/// Middleware classes that apply a limiter to every request.
const APP_WIDE_LIMITERS: &[&str] = &["SlowAPIMiddleware", "SlowAPIASGIMiddleware"];

/// Does one of the application files add a rate-limiting middleware for every route?
pub fn app_wide_rate_limit(files: &HashMap<String, String>) -> bool {
    files.iter().any(|(path, text)| {
        path.ends_with(".py")
            && APP_WIDE_LIMITERS.iter().any(|m| {
                text.lines().any(|l| {
                    let l = l.trim_start();
                    !l.starts_with('#') && l.contains("add_middleware(") && l.contains(m)
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowapi_middleware_limits_every_route() {
        let mut files = HashMap::new();
        files.insert(
            "app/app.py".to_string(),
            "from slowapi.middleware import SlowAPIMiddleware\napp.state.limiter = limiter\napp.add_middleware(SlowAPIMiddleware)\n".to_string(),
        );
        assert!(app_wide_rate_limit(&files));
        // Imported but not added, or added only in a comment: no limit.
        files.insert(
            "app/app.py".to_string(),
            "from slowapi.middleware import SlowAPIMiddleware\n# app.add_middleware(SlowAPIMiddleware)\n".to_string(),
        );
        assert!(!app_wide_rate_limit(&files));
    }
}
