//! The REST and GraphQL calls the App makes, typed to the fields it reads.

use super::client::{GitHub, GitHubError, Resp, encode_path};

/// What [`GitHub::create_once`] got: GitHub's answer to the POST, or the id of what an earlier attempt made.
enum Created {
    Made(Resp),
    Found(i64),
}
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A pull request, as far as an audit cares.
#[derive(Debug, Clone, Deserialize)]
pub struct Pull {
    pub number: i64,
    pub state: String,
    #[serde(default)]
    pub draft: bool,
    pub head: GitRef,
    pub base: GitRef,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitRef {
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub repo: Option<RepoRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepoRef {
    pub full_name: String,
}

/// One file of a pull request (`GET /repos/{owner}/{repo}/pulls/{pull_number}/files`).
#[derive(Debug, Clone, Deserialize)]
pub struct PrFile {
    pub filename: String,
    pub status: String,
    #[serde(default)]
    pub previous_filename: Option<String>,
    /// Left out by GitHub for large diffs and binary files.
    #[serde(default)]
    pub patch: Option<String>,
    #[serde(default)]
    pub changes: u64,
}

/// A commit's tree as `GET /repos/{owner}/{repo}/git/trees/{sha}?recursive=1` gives it: its files (blobs; folders
/// and submodules left out).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GitTree {
    pub files: Vec<TreeFile>,
    /// GitHub left entries out (over 100,000 entries or 7 MB): the listing is incomplete.
    pub truncated: bool,
}

/// One file of a tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeFile {
    pub path: String,
    /// The git blob sha: the same for the same contents, whatever the path or commit.
    pub sha: String,
    /// Bytes, when GitHub says.
    pub size: Option<u64>,
}

impl GitTree {
    /// The blobs of a tree answer (entries without a path are left out; a blob without a sha gets an empty one,
    /// which nothing caches).
    pub fn from_json(v: &Value) -> GitTree {
        let files = v["tree"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["type"] == "blob")
                    .filter_map(|e| {
                        Some(TreeFile {
                            path: e["path"].as_str()?.to_string(),
                            sha: e["sha"].as_str().unwrap_or_default().to_string(),
                            size: e["size"].as_u64(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        GitTree {
            files,
            truncated: v["truncated"].as_bool().unwrap_or(false),
        }
    }

    /// The paths, in the tree's order.
    pub fn paths(&self) -> Vec<String> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }
}

/// GitHub lists at most this many files of a pull request.
pub const MAX_PR_FILES: usize = 3000;

/// A review comment (`GET /repos/{owner}/{repo}/pulls/{pull_number}/comments`).
#[derive(Debug, Clone, Deserialize)]
pub struct ReviewComment {
    pub id: i64,
    pub body: String,
    #[serde(default)]
    pub in_reply_to_id: Option<i64>,
}

/// A review of a pull request (`GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews`).
#[derive(Debug, Clone, Deserialize)]
pub struct Review {
    pub id: i64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub commit_id: Option<String>,
}

/// 16 random hexadecimal characters.
fn nonce() -> String {
    use rand::RngExt as _;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// An inline comment of a new review.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewComment {
    pub path: String,
    pub line: usize,
    pub side: &'static str,
    pub body: String,
}

/// A review thread (GraphQL), with the database ids and authors of its comments.
#[derive(Debug, Clone)]
pub struct ReviewThread {
    pub id: String,
    pub resolved: bool,
    /// (database id, author login, body) of each comment, oldest first.
    pub comments: Vec<(i64, String, String)>,
}

/// Does a `Link` header have a `rel="next"` entry?
pub fn has_next_page(link: &str) -> bool {
    link.split(',').any(|part| {
        part.split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\""))
    })
}

fn split_repo(repo: &str) -> (&str, &str) {
    repo.split_once('/').unwrap_or((repo, ""))
}

impl GitHub {
    pub async fn get_pull(&self, inst: i64, repo: &str, number: i64) -> Result<Pull, GitHubError> {
        self.get_json(
            inst,
            &format!("/repos/{repo}/pulls/{number}"),
            "/repos/{owner}/{repo}/pulls/{pull_number}",
        )
        .await
    }

    /// Every file of a pull request (GitHub stops at 3000), 100 per page.
    pub async fn list_pr_files(
        &self,
        inst: i64,
        repo: &str,
        number: i64,
    ) -> Result<Vec<PrFile>, GitHubError> {
        let route = "/repos/{owner}/{repo}/pulls/{pull_number}/files";
        let mut files = Vec::new();
        for page in 1..=(MAX_PR_FILES / 100) {
            let resp = self
                .call(
                    inst,
                    Method::GET,
                    &format!("/repos/{repo}/pulls/{number}/files?per_page=100&page={page}"),
                    route,
                    None,
                    None,
                )
                .await?;
            let batch: Vec<PrFile> = resp.json(route)?;
            // GitHub's Link header says whether another page follows (no request for an empty last page
            // when the count is a multiple of 100); without one, a short page is the last.
            let more = match resp.headers.get(http::header::LINK) {
                Some(link) => has_next_page(link.to_str().unwrap_or_default()),
                None => batch.len() == 100,
            };
            files.extend(batch);
            if !more {
                break;
            }
        }
        Ok(files)
    }

    /// A file's bytes at a commit; `None` when it does not exist there.
    pub async fn get_file(
        &self,
        inst: i64,
        repo: &str,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<u8>>, GitHubError> {
        let route = "/repos/{owner}/{repo}/contents/{path}";
        let p = format!(
            "/repos/{repo}/contents/{}?ref={}",
            encode_path(path),
            encode_path(git_ref)
        );
        match self
            .call(
                inst,
                Method::GET,
                &p,
                route,
                None,
                Some("application/vnd.github.raw+json"),
            )
            .await
        {
            Ok(r) => Ok(Some(r.body.to_vec())),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every file of the tree at a commit, with its blob sha and size (one request; GitHub truncates very large
    /// trees and says so).
    pub async fn get_tree(&self, inst: i64, repo: &str, sha: &str) -> Result<GitTree, GitHubError> {
        let route = "/repos/{owner}/{repo}/git/trees/{tree_sha}";
        let v: Value = self
            .get_json(
                inst,
                &format!("/repos/{repo}/git/trees/{sha}?recursive=1"),
                route,
            )
            .await?;
        Ok(GitTree::from_json(&v))
    }

    /// Create a check run. Its `external_id` (set here when the body has none) lets a retry after an
    /// answer that may hide a created run (timeout, lost connection, 5xx) find that run instead of creating
    /// a second one.
    pub async fn create_check_run(
        &self,
        inst: i64,
        repo: &str,
        body: &Value,
    ) -> Result<i64, GitHubError> {
        let route = "/repos/{owner}/{repo}/check-runs";
        let mut body = body.clone();
        if body["external_id"].as_str().is_none_or(str::is_empty) {
            body["external_id"] = format!("prodaudit-{}", nonce()).into();
        }
        let external_id = body["external_id"].as_str().unwrap_or_default().to_string();
        let head = body["head_sha"].as_str().unwrap_or_default().to_string();
        let name = body["name"].as_str().unwrap_or_default().to_string();
        let found = self
            .create_once(
                inst,
                &format!("/repos/{repo}/check-runs"),
                route,
                &body,
                "the check run",
                || async {
                    Ok(self
                        .list_check_runs(inst, repo, &head, &name)
                        .await?
                        .into_iter()
                        .find(|r| r["external_id"].as_str() == Some(external_id.as_str()))
                        .and_then(|run| run["id"].as_i64()))
                },
            )
            .await?;
        match found {
            Created::Found(id) => Ok(id),
            Created::Made(r) => {
                let v: Value = r.json(route)?;
                v["id"].as_i64().ok_or_else(|| GitHubError::Decode {
                    route: route.into(),
                    detail: "no id".into(),
                })
            }
        }
    }

    /// POST something GitHub creates (a check run, a review, a comment), at most once. Answers that say GitHub
    /// did nothing are retried inside [`GitHub::call_creating`]; after one that may hide a created object (a
    /// timeout, a lost connection, a 5xx) `find` looks for it before the next attempt.
    async fn create_once<Fut>(
        &self,
        inst: i64,
        path: &str,
        route: &str,
        payload: &Value,
        what: &str,
        mut find: impl FnMut() -> Fut + Send,
    ) -> Result<Created, GitHubError>
    where
        Fut: std::future::Future<Output = Result<Option<i64>, GitHubError>> + Send,
    {
        let mut attempt = 0;
        loop {
            let err = match self
                .call_creating(inst, Method::POST, path, route, Some(payload))
                .await
            {
                Ok(r) => return Ok(Created::Made(r)),
                Err(e) => e,
            };
            attempt += 1;
            if !err.maybe_applied() || attempt >= self.attempts() {
                return Err(err);
            }
            tracing::warn!(error = %err, attempt, "{what} may have been created; looking for it");
            if let Some(id) = find().await? {
                return Ok(Created::Found(id));
            }
            tokio::time::sleep(self.retry_wait(attempt)).await;
        }
    }

    /// Check runs named `name` on a commit (the first 100, newest first).
    pub async fn list_check_runs(
        &self,
        inst: i64,
        repo: &str,
        head: &str,
        name: &str,
    ) -> Result<Vec<Value>, GitHubError> {
        let route = "/repos/{owner}/{repo}/commits/{ref}/check-runs";
        let v: Value = self
            .get_json(
                inst,
                &format!(
                    "/repos/{repo}/commits/{}/check-runs?check_name={}&filter=all&per_page=100",
                    encode_path(head),
                    encode_path(name)
                ),
                route,
            )
            .await?;
        Ok(v["check_runs"].as_array().cloned().unwrap_or_default())
    }

    pub async fn update_check_run(
        &self,
        inst: i64,
        repo: &str,
        id: i64,
        body: &Value,
    ) -> Result<(), GitHubError> {
        let route = "/repos/{owner}/{repo}/check-runs/{check_run_id}";
        self.call(
            inst,
            Method::PATCH,
            &format!("/repos/{repo}/check-runs/{id}"),
            route,
            Some(body),
            None,
        )
        .await?;
        Ok(())
    }

    /// Every item of a list endpoint, 100 per page, at most `max_pages` pages (a short page is the last).
    async fn get_pages<T: serde::de::DeserializeOwned>(
        &self,
        inst: i64,
        path: &str,
        route: &str,
        max_pages: usize,
    ) -> Result<Vec<T>, GitHubError> {
        let mut all = Vec::new();
        for page in 1..=max_pages {
            let batch: Vec<T> = self
                .get_json(inst, &format!("{path}?per_page=100&page={page}"), route)
                .await?;
            let done = batch.len() < 100;
            all.extend(batch);
            if done {
                break;
            }
        }
        Ok(all)
    }

    /// Review comments of a pull request, 100 per page.
    pub async fn list_review_comments(
        &self,
        inst: i64,
        repo: &str,
        number: i64,
    ) -> Result<Vec<ReviewComment>, GitHubError> {
        self.get_pages(
            inst,
            &format!("/repos/{repo}/pulls/{number}/comments"),
            "/repos/{owner}/{repo}/pulls/{pull_number}/comments",
            50,
        )
        .await
    }

    /// One review (event COMMENT) with inline comments on the head commit. The body ends with a hidden
    /// marker naming this exact review: after an answer that may hide a created review (timeout, lost
    /// connection, 5xx), the pull request's reviews are searched for it before the review is sent again.
    pub async fn create_review(
        &self,
        inst: i64,
        repo: &str,
        number: i64,
        commit_id: &str,
        body: &str,
        comments: &[NewComment],
    ) -> Result<i64, GitHubError> {
        let route = "/repos/{owner}/{repo}/pulls/{pull_number}/reviews";
        let key = {
            use sha2::Digest as _;
            let mut h = sha2::Sha256::new();
            h.update(commit_id.as_bytes());
            h.update(body.as_bytes());
            h.update(serde_json::to_vec(comments).unwrap_or_default());
            hex::encode(&h.finalize()[..8])
        };
        let marker = crate::report::markdown::review_marker(&key);
        let body = format!("{body}\n{marker}");
        let payload =
            json!({"commit_id": commit_id, "body": body, "event": "COMMENT", "comments": comments});
        let found = self
            .create_once(
                inst,
                &format!("/repos/{repo}/pulls/{number}/reviews"),
                route,
                &payload,
                "the review",
                || async {
                    Ok(self
                        .list_reviews(inst, repo, number)
                        .await?
                        .into_iter()
                        .find(|r| r.body.as_deref().is_some_and(|b| b.contains(&marker)))
                        .map(|r| r.id))
                },
            )
            .await?;
        match found {
            Created::Found(id) => Ok(id),
            Created::Made(r) => {
                let v: Value = r.json(route)?;
                Ok(v["id"].as_i64().unwrap_or_default())
            }
        }
    }

    /// The reviews of a pull request (up to 3,000, 100 per page).
    pub async fn list_reviews(
        &self,
        inst: i64,
        repo: &str,
        number: i64,
    ) -> Result<Vec<Review>, GitHubError> {
        self.get_pages(
            inst,
            &format!("/repos/{repo}/pulls/{number}/reviews"),
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
            30,
        )
        .await
    }

    /// The permission a user has on a repository: admin, maintain, write, triage, read or none.
    pub async fn collaborator_permission(
        &self,
        inst: i64,
        repo: &str,
        user: &str,
    ) -> Result<String, GitHubError> {
        let route = "/repos/{owner}/{repo}/collaborators/{username}/permission";
        let p = format!(
            "/repos/{repo}/collaborators/{}/permission",
            encode_path(user)
        );
        match self.call(inst, Method::GET, &p, route, None, None).await {
            Ok(r) => {
                let v: Value = r.json(route)?;
                // role_name tells maintain and triage apart; permission folds them into write/read.
                Ok(v["role_name"]
                    .as_str()
                    .or(v["permission"].as_str())
                    .unwrap_or("none")
                    .to_string())
            }
            Err(e) if e.status() == Some(404) => Ok("none".into()),
            Err(e) => Err(e),
        }
    }

    pub async fn add_reaction(
        &self,
        inst: i64,
        repo: &str,
        comment_id: i64,
        content: &str,
    ) -> Result<(), GitHubError> {
        let route = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions";
        let body = json!({"content": content});
        self.call(
            inst,
            Method::POST,
            &format!("/repos/{repo}/issues/comments/{comment_id}/reactions"),
            route,
            Some(&body),
            None,
        )
        .await?;
        Ok(())
    }

    /// A comment on the pull request's conversation. It carries a hidden marker unique to this call, so that
    /// after an answer that may hide a created comment (timeout, lost connection, 5xx) the comments since the
    /// first attempt are searched for it before it is sent again.
    pub async fn create_issue_comment(
        &self,
        inst: i64,
        repo: &str,
        number: i64,
        body: &str,
    ) -> Result<(), GitHubError> {
        let route = "/repos/{owner}/{repo}/issues/{issue_number}/comments";
        let marker = crate::report::markdown::comment_marker(&nonce());
        let since = chrono::Utc::now() - chrono::Duration::minutes(10);
        let payload = json!({"body": format!("{body}\n{marker}")});
        self.create_once(
            inst,
            &format!("/repos/{repo}/issues/{number}/comments"),
            route,
            &payload,
            "the comment",
            || async {
                let v: Vec<ReviewComment> = self
                    .get_json(
                        inst,
                        &format!(
                            "/repos/{repo}/issues/{number}/comments?since={}&per_page=100",
                            since.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                        route,
                    )
                    .await?;
                Ok(v.iter().find(|c| c.body.contains(&marker)).map(|c| c.id))
            },
        )
        .await?;
        Ok(())
    }

    /// Open pull requests whose head is this commit (for re-runs that arrive without them, e.g. from forks).
    pub async fn pulls_for_commit(
        &self,
        inst: i64,
        repo: &str,
        sha: &str,
    ) -> Result<Vec<i64>, GitHubError> {
        let route = "/repos/{owner}/{repo}/commits/{commit_sha}/pulls";
        let v: Vec<Value> = self
            .get_json(inst, &format!("/repos/{repo}/commits/{sha}/pulls"), route)
            .await?;
        Ok(v.iter()
            .filter(|p| p["state"] == "open" && p["head"]["sha"] == sha)
            .filter_map(|p| p["number"].as_i64())
            .collect())
    }

    /// A GraphQL query or mutation; GraphQL errors are errors.
    pub async fn graphql_query(
        &self,
        inst: i64,
        query: &str,
        variables: Value,
    ) -> Result<Value, GitHubError> {
        let route = "/graphql";
        let body = json!({"query": query, "variables": variables});
        let r = self
            .call(
                inst,
                Method::POST,
                &self.graphql_url(),
                route,
                Some(&body),
                None,
            )
            .await?;
        let v: Value = r.json(route)?;
        if let Some(errors) = v.get("errors").filter(|e| !e.is_null()) {
            return Err(GitHubError::Decode {
                route: route.into(),
                detail: errors.to_string(),
            });
        }
        Ok(v["data"].clone())
    }

    /// Review threads of a pull request with their comments (the first 100 threads, 30 comments each).
    pub async fn review_threads(
        &self,
        inst: i64,
        repo: &str,
        number: i64,
    ) -> Result<Vec<ReviewThread>, GitHubError> {
        let (owner, name) = split_repo(repo);
        let query = format!(
            "query($owner:String!,$name:String!,$number:Int!){{repository(owner:$owner,name:$name){{pullRequest(number:$number){{{THREADS_FIELDS}}}}}}}"
        );
        let data = self
            .graphql_query(
                inst,
                &query,
                json!({"owner": owner, "name": name, "number": number}),
            )
            .await?;
        Ok(parse_threads(
            &data["repository"]["pullRequest"]["reviewThreads"],
        ))
    }

    pub async fn resolve_thread(&self, inst: i64, thread_id: &str) -> Result<(), GitHubError> {
        let query =
            "mutation($id:ID!){resolveReviewThread(input:{threadId:$id}){thread{isResolved}}}";
        self.graphql_query(inst, query, json!({"id": thread_id}))
            .await?;
        Ok(())
    }
}

/// The GraphQL selection of a pull request's review threads (the first 100, 30 comments each).
pub const THREADS_FIELDS: &str = "reviewThreads(first:100){nodes{id isResolved comments(first:30){nodes{databaseId body author{login}}}}}";

/// Review threads from a `reviewThreads` GraphQL object.
pub fn parse_threads(threads: &Value) -> Vec<ReviewThread> {
    {
        let nodes = threads["nodes"].as_array().cloned().unwrap_or_default();
        nodes
            .iter()
            .map(|t| ReviewThread {
                id: t["id"].as_str().unwrap_or_default().to_string(),
                resolved: t["isResolved"].as_bool().unwrap_or(false),
                comments: t["comments"]["nodes"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|n| {
                                (
                                    n["databaseId"].as_i64().unwrap_or_default(),
                                    n["author"]["login"]
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_string(),
                                    n["body"].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::has_next_page;

    /// A tree answer in GitHub's shape: blobs with their sha and size; folders and submodules left out; the
    /// truncation flag kept (an incomplete listing must not build a repository model).
    #[test]
    fn tree_listing() {
        let v = serde_json::json!({
            "sha": "t1", "truncated": true,
            "tree": [
                {"path": "app", "mode": "040000", "type": "tree", "sha": "d1"},
                {"path": "app/main.py", "mode": "100644", "type": "blob", "sha": "b1", "size": 42},
                {"path": "libs/sub", "mode": "160000", "type": "commit", "sha": "c1"},
                {"path": "odd", "type": "blob"},
            ]
        });
        let tree = super::GitTree::from_json(&v);
        assert!(tree.truncated);
        assert_eq!(tree.paths(), vec!["app/main.py", "odd"]);
        assert_eq!(tree.files[0].sha, "b1");
        assert_eq!(tree.files[0].size, Some(42));
        assert_eq!((tree.files[1].sha.as_str(), tree.files[1].size), ("", None));
        assert!(!super::GitTree::from_json(&serde_json::json!({"tree": []})).truncated);
    }

    #[test]
    fn link_headers() {
        assert!(has_next_page(
            r#"<https://api.github.com/repositories/1/pulls/7/files?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/pulls/7/files?per_page=100&page=3>; rel="last""#
        ));
        assert!(!has_next_page(
            r#"<https://api.github.com/repositories/1/pulls/7/files?per_page=100&page=2>; rel="prev", <https://api.github.com/repositories/1/pulls/7/files?per_page=100&page=1>; rel="first""#
        ));
        assert!(!has_next_page(""));
    }
}
