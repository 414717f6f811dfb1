//! Topologies: an outlet with everything detection needs to judge it (its meters, bypass ducts, orders), an
//! enterprise with everything registered under it, and the routing of a source's data to the outlets it informs.
//! Built by the registry; read by detection, models and the API.

use super::{Enterprise, Meter, OperatingChange, Outlet, RestrictionOrder};
use std::collections::HashMap;

/// What a source is to the outlet being aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRole {
    /// The outlet's own CEMS.
    Cems,
    /// A production or treatment meter linked to it.
    Meter,
    /// One of its bypass ducts.
    Bypass,
}

/// An outlet with everything detection needs to judge it.
#[derive(Debug, Clone, Default)]
pub struct OutletTopology {
    /// The outlet.
    pub outlet: Outlet,
    /// Its enterprise (default if somehow missing).
    pub enterprise: Enterprise,
    /// Production meters whose gas goes to this outlet.
    pub production: Vec<Meter>,
    /// Treatment meters treating this outlet's gas.
    pub treatment: Vec<Meter>,
    /// Bypass ducts of this outlet.
    pub bypasses: Vec<Outlet>,
    /// Restriction orders of the enterprise.
    pub restrictions: Vec<RestrictionOrder>,
    /// Declared operating changes that apply to this outlet, oldest first.
    pub operating_changes: Vec<OperatingChange>,
}

impl OutletTopology {
    /// What a source is to this outlet: its own CEMS, one of its bypass ducts, or (anything else routed here) a meter.
    pub fn role_of(&self, source_id: &str) -> SourceRole {
        if source_id == self.outlet.id {
            SourceRole::Cems
        } else if self.bypasses.iter().any(|b| b.id == source_id) {
            SourceRole::Bypass
        } else {
            SourceRole::Meter
        }
    }

    /// The CEMS channels that say whether the outlet is monitored: its limited pollutants, or its flow when no
    /// limit is registered.
    pub fn monitored_codes(&self) -> Vec<String> {
        if self.outlet.limits_mg_m3.is_empty() {
            vec![super::codes::FLOW.to_string()]
        } else {
            self.outlet.limits_mg_m3.keys().cloned().collect()
        }
    }

    /// Every source feeding this outlet's aligned rows.
    pub fn source_ids(&self) -> Vec<String> {
        std::iter::once(self.outlet.id.clone())
            .chain(self.production.iter().map(|m| m.id.clone()))
            .chain(self.treatment.iter().map(|m| m.id.clone()))
            .chain(self.bypasses.iter().map(|b| b.id.clone()))
            .collect()
    }
}

/// An enterprise with everything registered under it.
#[derive(Debug, Clone)]
pub struct EnterpriseTopology {
    /// The enterprise.
    pub enterprise: Enterprise,
    /// Its outlets.
    pub outlets: Vec<Outlet>,
    /// Its meters.
    pub meters: Vec<Meter>,
    /// Its restriction orders.
    pub restrictions: Vec<RestrictionOrder>,
}

/// Routing from a source id to the stack outlets whose detection needs its data.
pub fn routing(topologies: &[OutletTopology]) -> HashMap<String, Vec<String>> {
    let mut routes: HashMap<String, Vec<String>> = HashMap::new();
    for t in topologies {
        let id = &t.outlet.id;
        let sources = std::iter::once(id)
            .chain(t.production.iter().map(|m| &m.id))
            .chain(t.treatment.iter().map(|m| &m.id))
            .chain(t.bypasses.iter().map(|b| &b.id));
        for s in sources {
            routes.entry(s.clone()).or_default().push(id.clone());
        }
    }
    routes
}
