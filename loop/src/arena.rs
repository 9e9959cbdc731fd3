//! A generational arena: the slot store behind handler ids and task ids.
//!
//! It owns slot reuse and the generation counters that make a stale id (one whose slot was
//! freed and perhaps reused) miss instead of reaching the new occupant. It must never run
//! user code: values are only moved in and out, and dropping a removed value is the
//! caller's business, done after every `RefCell` borrow of the arena has been released.

/// The largest generation plus one. Generations stay below it so that a handler key packed
/// into a `mio::Token` (index in the low half, generation in the high half) can never equal
/// the all-ones token reserved for the loop's `mio::Waker`.
const GEN_LIMIT: u64 = (1u64 << (usize::BITS / 2)) - 1;

/// A slot index plus the generation it had when the value was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) index: u32,
    pub(crate) gen: u32,
}

struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

/// Slots are reused most-recently-freed first, which is what makes stale-id bugs show up
/// quickly in tests rather than after millions of operations.
pub(crate) struct Arena<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Arena<T> {
    pub(crate) fn new() -> Arena<T> {
        Arena {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Inserts the value built by `make`, which receives the key first so that values can
    /// carry their own id (a task's waker does).
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(Key) -> T) -> Key {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                let index = u32::try_from(self.slots.len()).expect("arena index overflow");
                self.slots.push(Slot {
                    gen: 0,
                    value: None,
                });
                index
            }
        };
        let slot = &mut self.slots[index as usize];
        let key = Key {
            index,
            gen: slot.gen,
        };
        slot.value = Some(make(key));
        self.len += 1;
        key
    }

    pub(crate) fn insert(&mut self, value: T) -> Key {
        self.insert_with(|_| value)
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.gen == key.gen {
            slot.value.as_ref()
        } else {
            None
        }
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.gen == key.gen {
            slot.value.as_mut()
        } else {
            None
        }
    }

    /// Frees the slot and bumps its generation, so `key` and every copy of it go stale.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        let value = slot.value.take()?;
        slot.gen = if u64::from(slot.gen) + 1 >= GEN_LIMIT {
            0
        } else {
            slot.gen + 1
        };
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Empties the arena (for `IoLoop`'s teardown); ids handed out before stay stale.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for index in 0..self.slots.len() {
            let key = Key {
                index: index as u32,
                gen: self.slots[index].gen,
            };
            if let Some(value) = self.remove(key) {
                out.push(value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_slot_gets_a_new_generation_and_the_old_key_misses() {
        let mut arena = Arena::new();
        let a = arena.insert("a");
        assert_eq!(arena.remove(a), Some("a"));
        let b = arena.insert("b");
        assert_eq!(a.index, b.index);
        assert_ne!(a.gen, b.gen);
        assert_eq!(arena.get(a), None);
        assert_eq!(arena.remove(a), None);
        assert_eq!(arena.get(b), Some(&"b"));
        assert_eq!(arena.len(), 1);
    }

    #[test]
    fn removing_twice_is_harmless() {
        let mut arena = Arena::new();
        let a = arena.insert(1);
        assert_eq!(arena.remove(a), Some(1));
        assert_eq!(arena.remove(a), None);
        assert_eq!(arena.len(), 0);
        let bogus = Key { index: 99, gen: 0 };
        assert_eq!(arena.remove(bogus), None);
        assert_eq!(arena.get(bogus), None);
    }

    #[test]
    fn drain_empties_every_slot() {
        let mut arena = Arena::new();
        let keys: Vec<Key> = (0..5).map(|i| arena.insert(i)).collect();
        arena.remove(keys[2]);
        let mut drained = arena.drain();
        drained.sort();
        assert_eq!(drained, vec![0, 1, 3, 4]);
        assert_eq!(arena.len(), 0);
        assert!(keys.iter().all(|k| arena.get(*k).is_none()));
    }
}
