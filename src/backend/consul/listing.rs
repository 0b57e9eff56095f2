//! Listing: which agents to ask (discovery by node), what this owner holds on each, and the
//! ids others hold there (never written over).

use super::*;

/// Where registrations are listed: one agent, or the catalog node (catalog mode).
enum Place<'a> {
    Agent(&'a str),
    Catalog,
}

use super::found::{Found, Keep, Sorter};
use std::sync::Arc;

/// Up to this many missing ids are asked for by id (`ID == "a" or ...`); more, and the place
/// is read whole (one request either way).
const ID_FILTER_MAX: usize = 32;

/// A filter selecting `ids`, or `None` (read everything) when there are too many or one would
/// need escaping (rendered ids never do: they hold only `[a-z0-9-]`).
fn id_filter(ids: &[&str]) -> Option<String> {
    if ids.len() > ID_FILTER_MAX || ids.iter().any(|i| i.contains(['"', '\\'])) {
        return None;
    }
    Some(
        ids.iter()
            .map(|id| format!("ID == \"{id}\""))
            .collect::<Vec<_>>()
            .join(" or "),
    )
}

impl Consul {
    /// The agents to list this round: the one `url`, or (with placeholders) the agents of this
    /// round's endpoints, those known to hold registrations (or whose last listing failed),
    /// and — once per process — those the catalog names, so a host whose services all vanished
    /// while rancon was down is cleaned.
    async fn agents_to_list(&self, desired: &RegistrationMap) -> BTreeSet<String> {
        if self.url.is_literal() {
            return BTreeSet::from([self.url.as_str().to_string()]);
        }
        let mut agents: BTreeSet<String> = desired
            .values()
            .filter_map(|r| r.private.location.clone())
            .collect();
        let (known, discovered) = {
            let st = self.agents.lock().expect("agents lock");
            (st.known.clone(), st.discovered)
        };
        agents.extend(known);
        if !discovered {
            match self.discover(&agents).await {
                Ok(found) => {
                    agents.extend(found);
                    self.agents.lock().expect("agents lock").discovered = true;
                }
                Err(e) => {
                    tracing::warn!(backend = %self.name, error = %e, "cannot ask the catalog which agents hold registrations; retried next round")
                }
            }
        }
        agents
    }

    /// Asks one catalog (the `discovery_url`, else any of `agents`) for the agents holding
    /// this owner's registrations.
    async fn discover(&self, agents: &BTreeSet<String>) -> Result<BTreeSet<String>, BackendError> {
        let askable: Vec<String> = match &self.discovery_url {
            Some(u) => vec![u.clone()],
            None => agents.iter().cloned().collect(),
        };
        let mut last = None;
        for base in askable {
            match self.discover_via(&base).await {
                Ok(found) => return Ok(found),
                Err(e) => last = Some(e),
            }
        }
        // No agent to ask (nothing desired, none known): nothing can be held anywhere we know.
        last.map_or(Ok(BTreeSet::new()), Err)
    }

    /// The catalog's nodes, then each node's registrations carrying the owner tag: 1 + nodes
    /// reads, whatever the number of service names (one read per name was 19,289 reads for
    /// 20,000 services). A node's agent URL is `url` with `%HOST%` = the registration's
    /// address (the node's when it has none), which must be an IP or DNS name.
    async fn discover_via(&self, base: &str) -> Result<BTreeSet<String>, BackendError> {
        let query = self.api.dc();
        let nodes: Vec<wire::CatalogNode> = self
            .api
            .get(
                "discover agents",
                &wire::url(base, &["v1", "catalog", "nodes"]),
                &query,
            )
            .await?;
        let filter = format!("\"{}\" in Tags", self.owner_tag);
        let mut with_filter = query.clone();
        with_filter.push(("filter", &filter));
        // Futures built first, then driven: a closure over borrowed items inside the stream
        // trips the compiler's higher-ranked lifetime check under async_trait.
        let with_filter = &with_filter;
        let futs: Vec<_> = nodes
            .iter()
            .map(|n| {
                let url = wire::url(base, &["v1", "catalog", "node-services", &n.node]);
                async move {
                    let services: Option<wire::NodeServices> =
                        self.api.get("discover agents", &url, with_filter).await?;
                    Ok::<_, BackendError>((n, services))
                }
            })
            .collect();
        let per_node = futures::stream::iter(futs)
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        let mut found = BTreeSet::new();
        for result in per_node {
            let (node, services) = result?;
            let services = services.and_then(|s| s.services).unwrap_or_default();
            for s in services.iter().filter(|s| s.has_tag(&self.owner_tag)) {
                let host = if s.address().is_empty() {
                    node.address.as_str()
                } else {
                    s.address()
                };
                match self.agent_url(|k| (k == "host").then_some(host)) {
                    Ok(u) => {
                        found.insert(u);
                    }
                    Err((_, m)) => {
                        tracing::warn!(backend = %self.name, node = %node.node.escape_debug(), "cannot derive the agent URL of a node holding registrations: {m}")
                    }
                }
            }
        }
        Ok(found)
    }

    /// The agent URL: `url` rendered with the values `lookup` gives. Each value comes from
    /// source or server data and must be a bare IP address, a DNS name or a number (a port):
    /// anything else (`127.0.0.5:1/steal?x=`) could send the request, and the token, to
    /// another host. IPv6 addresses are bracketed. Errors: a placeholder without a value
    /// (`Template`), a value or a result that is not a host or URL (`Address`).
    pub(super) fn agent_url<'v>(
        &self,
        lookup: impl Fn(&str) -> Option<&'v str>,
    ) -> Result<String, (SkipKind, String)> {
        let template = |e| (SkipKind::Template, format!("url template: {e}"));
        let bad = std::cell::RefCell::new(None);
        let v6 = std::cell::RefCell::new(BTreeMap::new());
        self.url
            .render_with(|k| {
                let v = lookup(k)?;
                let number = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                match check_address(v) {
                    Err(why) if !number => {
                        bad.borrow_mut().get_or_insert_with(|| {
                            let v: String = v.chars().take(80).collect();
                            format!("%{}% = {v:?} {why}", k.to_uppercase())
                        });
                    }
                    _ => {}
                }
                if v.parse::<std::net::Ipv6Addr>().is_ok() {
                    v6.borrow_mut().insert(k.to_string(), format!("[{v}]"));
                }
                Some(v)
            })
            .map_err(template)?;
        if let Some(why) = bad.into_inner() {
            return Err((SkipKind::Address, format!("url template: {why}")));
        }
        let v6 = v6.into_inner();
        let url = self
            .url
            .render_with(|k| v6.get(k).map(String::as_str).or_else(|| lookup(k)))
            .map_err(template)?;
        match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Ok(url.trim_end_matches('/').to_string())
            }
            _ => Err((
                SkipKind::Address,
                format!("url template renders {url:?}, not an http(s) URL"),
            )),
        }
    }

    /// What a place holds, all or what `filter` selects, sorted as the answer is decoded.
    async fn read(
        &self,
        place: &Place<'_>,
        filter: Option<&str>,
        keep: Keep,
    ) -> Result<Found, BackendError> {
        let refused = |what: String, message: String| BackendError::Decode { what, message };
        match place {
            Place::Agent(agent) => {
                let query: Vec<(&str, &str)> = filter.map(|f| ("filter", f)).into_iter().collect();
                let url = wire::url(agent, &["v1", "agent", "services"]);
                self.api
                    .get_streamed("list services", &url, &query, move |body| {
                        super::found::agent_answer(body, Sorter::new(keep.clone()))
                    })
                    .await
            }
            Place::Catalog => {
                let mut query = self.api.dc();
                query.extend(filter.map(|f| ("filter", f)));
                let url = wire::url(
                    self.url.as_str(),
                    &["v1", "catalog", "node-services", &self.node],
                );
                let node: Option<wire::NodeServices> = self
                    .api
                    .get_streamed("list services", &url, &query, |body| {
                        serde_json::from_reader(body)
                    })
                    .await?;
                let list = node.and_then(|n| n.services).unwrap_or_default();
                Sorter::new(keep)
                    .all(list)
                    .map_err(|m| refused(format!("list services answer from {url}"), m))
            }
        }
    }

    /// Lists one place: this owner's registrations there, and who holds the ids of `want`
    /// (desired there) that are not ours. A steady place costs one read: ours (the owner tag)
    /// and the wanted ids someone else held there last time (`held`). Ids it lacks beyond
    /// those cost one more read, of those ids. The first listing of a place by this process
    /// reads everything there at once instead (every id is new to it then).
    async fn list_place(
        &self,
        place: &Place<'_>,
        want: &[&str],
        first: bool,
        held: Option<&BTreeSet<String>>,
    ) -> Result<Found, BackendError> {
        let location = match place {
            Place::Agent(a) => Some(*a),
            Place::Catalog => None,
        };
        let sorter = |asked: BTreeSet<String>, only_asked: bool| Keep {
            owner_tag: self.owner_tag.clone(),
            location: location.map(str::to_string),
            asked: Arc::new(asked),
            only_asked,
        };
        if first && !want.is_empty() {
            let asked = want.iter().map(|s| s.to_string()).collect();
            return self.read(place, None, sorter(asked, false)).await;
        }
        let still: Vec<&str> = match held {
            Some(h) if !h.is_empty() => want.iter().copied().filter(|id| h.contains(*id)).collect(),
            _ => Vec::new(),
        };
        let mut filter = Some(format!("\"{}\" in Tags", self.owner_tag));
        if !still.is_empty() {
            filter =
                id_filter(&still).map(|ids| format!("{} or {ids}", filter.unwrap_or_default()));
        }
        let asked: BTreeSet<String> = still.iter().map(|s| s.to_string()).collect();
        let mut found = self
            .read(place, filter.as_deref(), sorter(asked, false))
            .await?;
        let missing: Vec<&str> = {
            let foreign: BTreeSet<&str> = found.foreign.iter().map(|(id, _)| id.as_str()).collect();
            want.iter()
                .copied()
                .filter(|id| {
                    !found.regs.contains_key(*id) && !foreign.contains(id) && !still.contains(id)
                })
                .collect()
        };
        if !missing.is_empty() {
            let asked = missing.iter().map(|s| s.to_string()).collect();
            let more = self
                .read(place, id_filter(&missing).as_deref(), sorter(asked, true))
                .await?;
            found.regs.extend(more.regs);
            found.foreign.extend(more.foreign);
        }
        Ok(found)
    }

    pub(super) async fn list_agents(
        &self,
        desired: &RegistrationMap,
    ) -> Result<Listing, BackendError> {
        let agents = self.agents_to_list(desired).await;
        let mut want: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in desired.values() {
            if let Some(at) = r.private.location.as_deref() {
                want.entry(at).or_default().push(&r.id);
            }
        }
        let (listed, held) = {
            let st = self.agents.lock().expect("agents lock");
            (st.listed.clone(), st.held.clone())
        };
        let (want, listed, held) = (&want, &listed, &held);
        let futs: Vec<_> = agents
            .into_iter()
            .map(|a| async move {
                let ids = want.get(a.as_str()).map_or(&[][..], Vec::as_slice);
                let first = !listed.contains(&a);
                let r = self
                    .list_place(&Place::Agent(&a), ids, first, held.get(&a))
                    .await;
                (a, r)
            })
            .collect();
        let mut results = futures::stream::iter(futs)
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        results.sort_by(|a, b| a.0.cmp(&b.0));
        let mut listing = Listing::default();
        let mut st = self.agents.lock().expect("agents lock");
        st.failed.clear();
        for (agent, result) in results {
            match result {
                Ok(found) => {
                    self.expected.listed(&agent, found.regs.values());
                    if found.regs.is_empty() {
                        st.known.remove(&agent);
                    } else {
                        st.known.insert(agent.clone());
                    }
                    remember_held(&mut st, &agent, &found);
                    st.listed.insert(agent);
                    if listing.regs.is_empty() {
                        listing.regs = found.regs;
                    } else {
                        for (_, reg) in found.regs {
                            insert_listed(&mut listing.regs, reg, desired);
                        }
                    }
                    listing.foreign.extend(found.foreign);
                }
                // One agent: its failure is the backend's. Several: it fails only its own work.
                Err(e) if self.url.is_literal() => return Err(e),
                Err(e) => {
                    // Its registrations are unknown, not gone: keep it known until a listing
                    // succeeds, even if no endpoint points at it any more.
                    self.expected.unknown(&agent);
                    st.known.insert(agent.clone());
                    st.failed.insert(agent, e.clone());
                    listing.partial.push(e);
                }
            }
        }
        drop(st);
        moved_onto_foreign(&mut listing);
        Ok(listing)
    }

    pub(super) async fn list_catalog(
        &self,
        desired: &RegistrationMap,
    ) -> Result<Listing, BackendError> {
        let want: Vec<&str> = desired.keys().map(String::as_str).collect();
        let (first, held) = {
            let st = self.agents.lock().expect("agents lock");
            (
                !st.listed.contains(&self.node),
                st.held.get(&self.node).cloned(),
            )
        };
        let found = self
            .list_place(&Place::Catalog, &want, first, held.as_ref())
            .await?;
        self.expected.listed(self.url.as_str(), found.regs.values());
        {
            let mut st = self.agents.lock().expect("agents lock");
            remember_held(&mut st, &self.node, &found);
            st.listed.insert(self.node.clone());
        }
        let mut listing = Listing {
            regs: found.regs,
            ..Default::default()
        };
        listing.foreign.extend(found.foreign);
        Ok(listing)
    }
}

/// Records the ids someone else holds at `place` after a successful listing of it.
fn remember_held(st: &mut Agents, place: &str, found: &Found) {
    if found.foreign.is_empty() {
        st.held.remove(place);
    } else {
        let ids = found.foreign.iter().map(|(id, _)| id.clone()).collect();
        st.held.insert(place.to_string(), ids);
    }
}

/// Adds a listed registration. The same id on two agents (a service moved while its id lacks
/// `%HOST%`): the copy on the agent this round wants keeps the id, the other is keyed
/// `<id>@<agent>` so that it is cleaned up instead of hidden.
fn insert_listed(regs: &mut RegistrationMap, reg: Registration, desired: &RegistrationMap) {
    let Some(prev) = regs.remove(&reg.id) else {
        regs.insert(reg.id.clone(), reg);
        return;
    };
    let wanted = desired
        .get(&reg.id)
        .and_then(|d| d.private.location.as_ref());
    let (keep, mut other) = if wanted == reg.private.location.as_ref() {
        (reg, prev)
    } else {
        (prev, reg)
    };
    let agent = other.private.location.clone().unwrap_or_default();
    other.private.registry_id = Some(other.id.clone());
    other.id = format!("{}@{agent}", other.id);
    regs.insert(keep.id.clone(), keep);
    regs.insert(other.id.clone(), other);
}

/// Meta `rancon-checks` holds a digest of the check specs, the register body needs the specs
/// (`private.attrs`): a listed registration whose digest is the desired one gets the desired
/// specs, so the two compare equal.
pub(super) fn same_checks(listing: &mut Listing, desired: &RegistrationMap) {
    for (id, reg) in &mut listing.regs {
        let Some(want) = desired.get(id) else {
            continue;
        };
        if !want.private.attrs.is_empty() && reg.meta.get(CHECKS_META) == want.meta.get(CHECKS_META)
        {
            reg.private.attrs = want.private.attrs.clone();
        }
    }
}

/// A desired id held by someone else on its agent, while this owner holds the same id on
/// another agent (the endpoint moved there): that copy is keyed `<id>@<agent>` so it is cleaned
/// up, and the id itself is left to its holder.
fn moved_onto_foreign(listing: &mut Listing) {
    for id in listing.foreign.keys() {
        if let Some(mut reg) = listing.regs.remove(id) {
            let agent = reg.private.location.clone().unwrap_or_default();
            reg.private.registry_id = Some(reg.id.clone());
            reg.id = format!("{}@{agent}", reg.id);
            listing.regs.insert(reg.id.clone(), reg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ID_FILTER_MAX, id_filter};

    #[test]
    fn missing_ids_are_asked_for_by_id_up_to_a_limit() {
        assert_eq!(
            id_filter(&["a-1", "b-2"]).as_deref(),
            Some(r#"ID == "a-1" or ID == "b-2""#)
        );
        let many: Vec<String> = (0..=ID_FILTER_MAX).map(|i| format!("s-{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(id_filter(&many), None, "past the limit: read everything");
        assert_eq!(
            id_filter(&["a\" or true"]),
            None,
            "never an injected expression"
        );
    }
}
