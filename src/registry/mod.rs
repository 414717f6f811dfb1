//! The registry in memory: who reports under which source id, and how outlets, meters and orders hang together.
//! Writes go through to the store first, so the in-memory view is never ahead of what survives a crash.
//!
//! Detection asks one question of it above all: for an outlet, which meters tell whether its production and its
//! treatment run, and which bypass ducts could take its gas ([`OutletTopology`]).

use crate::domain::secret;
use crate::domain::{
    Enterprise, EnterpriseTopology, Meter, MeterRole, OperatingChange, Outlet, OutletKind,
    OutletTopology, RestrictionOrder,
};
use crate::store::{RegistryItem, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Why a registry write was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A field is missing or out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A referenced object does not exist.
    #[error("{what} {id:?} is not registered")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// Persisting failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What kind of source a source id is.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// An outlet's CEMS (stack or bypass).
    Outlet,
    /// A power meter.
    Meter,
}

#[derive(Default)]
struct Maps {
    enterprises: BTreeMap<String, Enterprise>,
    outlets: BTreeMap<String, Outlet>,
    meters: BTreeMap<String, Meter>,
    restrictions: BTreeMap<String, RestrictionOrder>,
    operating_changes: BTreeMap<String, OperatingChange>,
}

/// The shared registry. Reads are cheap (a read lock); writes persist first.
pub struct Registry {
    store: Store,
    maps: RwLock<Maps>,
    version: AtomicU64,
}

/// Shared handle.
pub type RegistryRef = Arc<Registry>;

fn check_id(field: &'static str, id: &str) -> Result<(), RegistryError> {
    if id.is_empty() {
        return Err(RegistryError::Invalid {
            field,
            reason: "must not be empty".into(),
        });
    }
    if id.len() > 128 || id.contains('\0') || id.chars().any(char::is_control) {
        return Err(RegistryError::Invalid {
            field,
            reason: "must be at most 128 bytes with no control characters".into(),
        });
    }
    Ok(())
}

fn check_finite(field: &'static str, v: f64, min: f64, max: f64) -> Result<(), RegistryError> {
    if !v.is_finite() || v < min || v > max {
        return Err(RegistryError::Invalid {
            field,
            reason: format!("{v} is outside [{min}, {max}]"),
        });
    }
    Ok(())
}

impl Registry {
    /// Loads the registry from the store.
    ///
    /// # Errors
    /// Store failure.
    pub fn load(store: Store) -> Result<Self, StoreError> {
        let mut maps = Maps::default();
        for item in store.registry_items()? {
            maps.apply(item);
        }
        Ok(Self {
            store,
            maps: RwLock::new(maps),
            version: AtomicU64::new(1),
        })
    }

    /// Bumped on every write, so that detection knows to refresh its routing.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        // A poisoned lock means a writer panicked mid-update of plain maps; the maps are still consistent values.
        self.maps.read().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, item: RegistryItem) -> Result<(), RegistryError> {
        self.store.put_registry(&item)?;
        self.store.flush()?;
        self.maps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(item);
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn require_enterprise(&self, id: &str) -> Result<(), RegistryError> {
        if self.read().enterprises.contains_key(id) {
            Ok(())
        } else {
            Err(RegistryError::NotFound {
                what: "enterprise",
                id: id.into(),
            })
        }
    }

    /// Inserts or replaces an enterprise.
    ///
    /// # Errors
    /// Invalid fields or store failure.
    pub fn upsert_enterprise(&self, e: Enterprise) -> Result<Enterprise, RegistryError> {
        check_id("id", &e.id)?;
        if !matches!(e.performance_grade.as_str(), "" | "A" | "B" | "C" | "D") {
            return Err(RegistryError::Invalid {
                field: "performance_grade",
                reason: format!("{:?} is not one of A, B, C, D", e.performance_grade),
            });
        }
        self.persist(RegistryItem::Enterprise(e.clone()))?;
        Ok(e)
    }

    /// Inserts or replaces an outlet. Its id must not already be a meter's (ids are source ids).
    ///
    /// # Errors
    /// Invalid fields, unknown enterprise or main outlet, or store failure.
    pub fn upsert_outlet(&self, mut o: Outlet) -> Result<Outlet, RegistryError> {
        check_id("id", &o.id)?;
        self.require_enterprise(&o.enterprise_id)?;
        check_finite("reference_o2_pct", o.reference_o2_pct, 0.0, 20.9)?;
        for v in o.limits_mg_m3.values() {
            check_finite("limits_mg_m3", *v, 0.0, 1e9)?;
        }
        for v in o.permitted_t_per_year.values() {
            check_finite("permitted_t_per_year", *v, 0.0, 1e12)?;
        }
        {
            let maps = self.read();
            if maps.meters.contains_key(&o.id) {
                return Err(RegistryError::Invalid {
                    field: "id",
                    reason: format!("{:?} is already a meter's source id", o.id),
                });
            }
            // Passwords are stored sealed; an upsert without one keeps the registered one (reads never return it,
            // so a client could not send it back).
            o.hj212_password = match (o.hj212_password.as_str(), maps.outlets.get(&o.id)) {
                ("", Some(old)) => old.hj212_password.clone(),
                (pw, _) => secret::seal_password(pw),
            };
            if o.kind == OutletKind::Bypass {
                match maps.outlets.get(&o.main_outlet_id) {
                    Some(main) if main.kind == OutletKind::Stack => {}
                    Some(_) => {
                        return Err(RegistryError::Invalid {
                            field: "main_outlet_id",
                            reason: "a bypass must point at a stack".into(),
                        })
                    }
                    None => {
                        return Err(RegistryError::NotFound {
                            what: "main outlet",
                            id: o.main_outlet_id.clone(),
                        })
                    }
                }
            }
        }
        self.persist(RegistryItem::Outlet(o.clone()))?;
        Ok(o)
    }

    /// Inserts or replaces a meter.
    ///
    /// # Errors
    /// Invalid fields, unknown enterprise or outlet, or store failure.
    pub fn upsert_meter(&self, mut m: Meter) -> Result<Meter, RegistryError> {
        check_id("id", &m.id)?;
        self.require_enterprise(&m.enterprise_id)?;
        check_finite("rated_kw", m.rated_kw, 0.0, 1e7)?;
        {
            let maps = self.read();
            if maps.outlets.contains_key(&m.id) {
                return Err(RegistryError::Invalid {
                    field: "id",
                    reason: format!("{:?} is already an outlet's source id", m.id),
                });
            }
            m.hj212_password = match (m.hj212_password.as_str(), maps.meters.get(&m.id)) {
                ("", Some(old)) => old.hj212_password.clone(),
                (pw, _) => secret::seal_password(pw),
            };
            for o in &m.outlet_ids {
                if !maps.outlets.contains_key(o) {
                    return Err(RegistryError::NotFound {
                        what: "outlet",
                        id: o.clone(),
                    });
                }
            }
        }
        self.persist(RegistryItem::Meter(m.clone()))?;
        Ok(m)
    }

    /// Inserts or replaces a restriction order.
    ///
    /// # Errors
    /// Invalid window or fraction, unknown enterprise, or store failure.
    pub fn upsert_restriction(
        &self,
        r: RestrictionOrder,
    ) -> Result<RestrictionOrder, RegistryError> {
        check_id("id", &r.id)?;
        self.require_enterprise(&r.enterprise_id)?;
        if r.end_ms <= r.start_ms {
            return Err(RegistryError::Invalid {
                field: "end_ms",
                reason: "must be after start_ms".into(),
            });
        }
        check_finite("max_load_fraction", r.max_load_fraction, 0.0, 1.0)?;
        self.persist(RegistryItem::Restriction(r.clone()))?;
        Ok(r)
    }

    /// Records a declared operating change at server time `now_ms`: its id is derived from what it declares, and
    /// a declaration already on record is returned as it was first recorded (records are never rewritten).
    ///
    /// # Errors
    /// Unknown enterprise, an outlet not of that enterprise, no effective time, or store failure.
    pub fn record_operating_change(
        &self,
        mut c: OperatingChange,
        now_ms: i64,
    ) -> Result<OperatingChange, RegistryError> {
        self.require_enterprise(&c.enterprise_id)?;
        if !c.outlet_id.is_empty() {
            let owner = self
                .read()
                .outlets
                .get(&c.outlet_id)
                .map(|o| o.enterprise_id.clone());
            match owner {
                None => {
                    return Err(RegistryError::NotFound {
                        what: "outlet",
                        id: c.outlet_id,
                    })
                }
                Some(e) if e != c.enterprise_id => {
                    return Err(RegistryError::Invalid {
                        field: "outlet_id",
                        reason: format!(
                            "outlet {:?} is not of enterprise {:?}",
                            c.outlet_id, c.enterprise_id
                        ),
                    })
                }
                Some(_) => {}
            }
        }
        if c.effective_ms <= 0 {
            return Err(RegistryError::Invalid {
                field: "effective_ms",
                reason: "must be set (Unix ms)".into(),
            });
        }
        c.id = c.derived_id();
        if let Some(existing) = self.read().operating_changes.get(&c.id) {
            return Ok(existing.clone());
        }
        c.recorded_at_ms = now_ms;
        self.persist(RegistryItem::OperatingChange(c.clone()))?;
        Ok(c)
    }

    /// The declared operating changes of an enterprise, in effective order.
    pub fn operating_changes(&self, enterprise_id: &str) -> Vec<OperatingChange> {
        let mut out: Vec<OperatingChange> = self
            .read()
            .operating_changes
            .values()
            .filter(|c| c.enterprise_id == enterprise_id)
            .cloned()
            .collect();
        out.sort_by_key(|c| (c.effective_ms, c.id.clone()));
        out
    }

    /// What a source id is, if registered.
    pub fn source_kind(&self, source_id: &str) -> Option<SourceKind> {
        let maps = self.read();
        if maps.outlets.contains_key(source_id) {
            Some(SourceKind::Outlet)
        } else if maps.meters.contains_key(source_id) {
            Some(SourceKind::Meter)
        } else {
            None
        }
    }

    /// A registered outlet.
    pub fn outlet(&self, id: &str) -> Option<Outlet> {
        self.read().outlets.get(id).cloned()
    }

    /// A registered meter.
    pub fn meter(&self, id: &str) -> Option<Meter> {
        self.read().meters.get(id).cloned()
    }

    /// The enterprise a registered source (outlet or meter) belongs to.
    pub fn enterprise_of_source(&self, source_id: &str) -> Option<String> {
        let maps = self.read();
        maps.outlets
            .get(source_id)
            .map(|o| o.enterprise_id.clone())
            .or_else(|| maps.meters.get(source_id).map(|m| m.enterprise_id.clone()))
    }

    /// Sets (rotates) or, with an empty one, clears the HJ 212 password of a registered outlet or meter.
    ///
    /// # Errors
    /// An unregistered source, or a store failure.
    pub fn set_hj212_password(&self, source_id: &str, password: &str) -> Result<(), RegistryError> {
        let sealed = secret::seal_password(password);
        if let Some(mut o) = self.outlet(source_id) {
            o.hj212_password = sealed;
            self.persist(RegistryItem::Outlet(o))?;
        } else if let Some(mut m) = self.meter(source_id) {
            m.hj212_password = sealed;
            self.persist(RegistryItem::Meter(m))?;
        } else {
            return Err(RegistryError::NotFound {
                what: "source",
                id: source_id.to_string(),
            });
        }
        Ok(())
    }

    /// The HJ 212 password a source must send, if the source is registered (`Some("")` = not checked).
    pub fn hj212_password(&self, source_id: &str) -> Option<String> {
        let maps = self.read();
        maps.outlets
            .get(source_id)
            .map(|o| o.hj212_password.clone())
            .or_else(|| maps.meters.get(source_id).map(|m| m.hj212_password.clone()))
    }

    /// Enterprises filtered by region and industry (empty = any).
    pub fn enterprises(&self, region: &str, industry: &str) -> Vec<Enterprise> {
        self.read()
            .enterprises
            .values()
            .filter(|e| region.is_empty() || e.region == region)
            .filter(|e| industry.is_empty() || e.industry == industry)
            .cloned()
            .collect()
    }

    /// One enterprise.
    pub fn enterprise(&self, id: &str) -> Option<Enterprise> {
        self.read().enterprises.get(id).cloned()
    }

    /// The enterprise's and the outlet's names, for summaries (empty where not registered).
    pub fn names(&self, enterprise_id: &str, outlet_id: &str) -> (String, String) {
        let maps = self.read();
        (
            maps.enterprises
                .get(enterprise_id)
                .map(|e| e.name.clone())
                .unwrap_or_default(),
            maps.outlets
                .get(outlet_id)
                .map(|o| o.name.clone())
                .unwrap_or_default(),
        )
    }

    /// An enterprise with its outlets, meters and orders.
    pub fn enterprise_topology(&self, id: &str) -> Option<EnterpriseTopology> {
        let maps = self.read();
        let e = maps.enterprises.get(id)?.clone();
        let outlets = maps
            .outlets
            .values()
            .filter(|o| o.enterprise_id == id)
            .cloned()
            .collect();
        let meters = maps
            .meters
            .values()
            .filter(|m| m.enterprise_id == id)
            .cloned()
            .collect();
        let orders = maps
            .restrictions
            .values()
            .filter(|r| r.enterprise_id == id)
            .cloned()
            .collect();
        Some(EnterpriseTopology {
            enterprise: e,
            outlets,
            meters,
            restrictions: orders,
        })
    }

    /// Every stack outlet with its meters, bypasses and orders: the unit detection works on.
    pub fn stack_topologies(&self) -> Vec<OutletTopology> {
        let maps = self.read();
        maps.outlets
            .values()
            .filter(|o| o.kind == OutletKind::Stack)
            .map(|o| {
                let linked = |role: MeterRole| -> Vec<Meter> {
                    maps.meters
                        .values()
                        .filter(|m| m.role == role && m.outlet_ids.contains(&o.id))
                        .cloned()
                        .collect()
                };
                OutletTopology {
                    enterprise: maps
                        .enterprises
                        .get(&o.enterprise_id)
                        .cloned()
                        .unwrap_or_default(),
                    production: linked(MeterRole::Production),
                    treatment: linked(MeterRole::Treatment),
                    bypasses: maps
                        .outlets
                        .values()
                        .filter(|b| b.kind == OutletKind::Bypass && b.main_outlet_id == o.id)
                        .cloned()
                        .collect(),
                    restrictions: maps
                        .restrictions
                        .values()
                        .filter(|r| r.enterprise_id == o.enterprise_id)
                        .cloned()
                        .collect(),
                    operating_changes: {
                        let mut changes: Vec<OperatingChange> = maps
                            .operating_changes
                            .values()
                            .filter(|c| c.enterprise_id == o.enterprise_id && c.applies_to(&o.id))
                            .cloned()
                            .collect();
                        changes.sort_by_key(|c| c.effective_ms);
                        changes
                    },
                    outlet: o.clone(),
                }
            })
            .collect()
    }

    /// Region of an enterprise (for anomaly filters), empty if unknown.
    pub fn region_of(&self, enterprise_id: &str) -> String {
        self.read()
            .enterprises
            .get(enterprise_id)
            .map(|e| e.region.clone())
            .unwrap_or_default()
    }

    /// Number of registered sources of each kind (outlets, meters), for logs.
    pub fn counts(&self) -> (usize, usize, usize) {
        let maps = self.read();
        (
            maps.enterprises.len(),
            maps.outlets.len(),
            maps.meters.len(),
        )
    }
}

impl Maps {
    fn apply(&mut self, item: RegistryItem) {
        match item {
            RegistryItem::Enterprise(e) => {
                self.enterprises.insert(e.id.clone(), e);
            }
            RegistryItem::Outlet(o) => {
                self.outlets.insert(o.id.clone(), o);
            }
            RegistryItem::Meter(m) => {
                self.meters.insert(m.id.clone(), m);
            }
            RegistryItem::Restriction(r) => {
                self.restrictions.insert(r.id.clone(), r);
            }
            RegistryItem::OperatingChange(c) => {
                self.operating_changes.insert(c.id.clone(), c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::routing;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        (dir, Registry::load(store).unwrap())
    }

    #[test]
    fn references_must_exist_and_ids_must_not_collide() {
        let (_d, r) = registry();
        let o = Outlet {
            id: "o1".into(),
            enterprise_id: "e1".into(),
            reference_o2_pct: 6.0,
            ..Default::default()
        };
        assert!(matches!(
            r.upsert_outlet(o.clone()),
            Err(RegistryError::NotFound { .. })
        ));
        r.upsert_enterprise(Enterprise {
            id: "e1".into(),
            ..Default::default()
        })
        .unwrap();
        r.upsert_outlet(o).unwrap();
        let m = Meter {
            id: "o1".into(),
            enterprise_id: "e1".into(),
            ..Default::default()
        };
        assert!(matches!(
            r.upsert_meter(m),
            Err(RegistryError::Invalid { field: "id", .. })
        ));
        let bad = Outlet {
            id: "b1".into(),
            enterprise_id: "e1".into(),
            kind: OutletKind::Bypass,
            main_outlet_id: "nope".into(),
            ..Default::default()
        };
        assert!(r.upsert_outlet(bad).is_err());
    }

    #[test]
    fn topology_and_routing_link_meters_and_bypasses_to_their_stack() {
        let (dir, r) = registry();
        r.upsert_enterprise(Enterprise {
            id: "e1".into(),
            ..Default::default()
        })
        .unwrap();
        for (id, kind, main) in [
            ("s1", OutletKind::Stack, ""),
            ("b1", OutletKind::Bypass, "s1"),
        ] {
            r.upsert_outlet(Outlet {
                id: id.into(),
                enterprise_id: "e1".into(),
                kind,
                main_outlet_id: main.into(),
                ..Default::default()
            })
            .unwrap();
        }
        for (id, role) in [("p1", MeterRole::Production), ("t1", MeterRole::Treatment)] {
            r.upsert_meter(Meter {
                id: id.into(),
                enterprise_id: "e1".into(),
                role,
                outlet_ids: vec!["s1".into()],
                rated_kw: 100.0,
                ..Default::default()
            })
            .unwrap();
        }
        let tops = r.stack_topologies();
        assert_eq!(tops.len(), 1);
        assert_eq!(tops[0].production[0].id, "p1");
        assert_eq!(tops[0].treatment[0].id, "t1");
        assert_eq!(tops[0].bypasses[0].id, "b1");
        let routes = routing(&tops);
        assert_eq!(routes["b1"], vec!["s1".to_string()]);
        assert!(!routes.contains_key("e1"));
        drop(r);
        // Reload from disk.
        let store = Store::open(dir.path(), 8 << 20).unwrap();
        let r2 = Registry::load(store).unwrap();
        assert_eq!(r2.counts(), (1, 2, 2));
    }

    #[test]
    fn topologies_hold_the_changes_declared_for_the_outlet_or_its_enterprise_across_a_reload() {
        let (dir, r) = registry();
        r.upsert_enterprise(Enterprise {
            id: "e1".into(),
            ..Default::default()
        })
        .unwrap();
        for id in ["s1", "s2"] {
            r.upsert_outlet(Outlet {
                id: id.into(),
                enterprise_id: "e1".into(),
                kind: OutletKind::Stack,
                ..Default::default()
            })
            .unwrap();
        }
        let change = |outlet: &str, effective_ms| OperatingChange {
            enterprise_id: "e1".into(),
            outlet_id: outlet.into(),
            effective_ms,
            ..Default::default()
        };
        let s1 = r.record_operating_change(change("s1", 2_000), 10).unwrap();
        let all = r.record_operating_change(change("", 1_000), 11).unwrap();
        let changes_of = |r: &Registry, outlet: &str| -> Vec<String> {
            let t = r.stack_topologies();
            let t = t.iter().find(|t| t.outlet.id == outlet).unwrap();
            t.operating_changes.iter().map(|c| c.id.clone()).collect()
        };
        assert_eq!(changes_of(&r, "s1"), vec![all.id.clone(), s1.id.clone()]);
        assert_eq!(changes_of(&r, "s2"), vec![all.id.clone()]);
        drop(r);
        let reloaded = Registry::load(Store::open(dir.path(), 8 << 20).unwrap()).unwrap();
        assert_eq!(changes_of(&reloaded, "s1"), vec![all.id, s1.id]);
    }
}
