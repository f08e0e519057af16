# -*- coding: utf-8 -*-
# Copyright (c) hashistack.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Difference tracking for hashistack.azure modules (private API).

Modules describe a resource as a plain "model" dict in the module's own vocabulary (not the REST
shape), build the desired model from their parameters (``None`` = not managed) and the current
model from Azure, and let ``ModelDiff`` decide what changes:

    d = ModelDiff(current_model)
    d.compare('capacity', desired['capacity'])
    d.compare('zones', desired['zones'], kind='set')
    d.compare_tags(desired['tags'], purge=False)
    if d.changed: ...           # send the update
    result['diff'] = d.diff     # {'before': ..., 'after': ...}  for --diff
    result['changes'] = d.changes  # ['capacity: 3 -> 5', ...]

``immutable_errors(current, desired, fields, noun)`` refuses changes Azure cannot make on an existing resource.
"""

from __future__ import annotations

import copy
import json


def _canon(value):
    """Canonical JSON text used to compare values (dict key order does not matter)."""
    return json.dumps(value, sort_keys=True, default=str)


def values_equal(desired, current, kind='exact'):
    """Compare a desired value with the current one.

    kind:
      exact   - equal after canonicalisation (list order matters)
      set     - lists compared as sets of canonical items (order does not matter)
      ci      - case-insensitive strings
      location- Azure locations (case and spaces do not matter: 'West Europe' is westeurope)
      subset  - desired dict items are all present in current (tags without purge)
      dict    - dicts equal
    """
    if desired is None:
        return True
    if kind in ('ci', 'location'):
        if current is None:
            return False
        if kind == 'location':
            return str(desired).replace(' ', '').lower() == str(current).replace(' ', '').lower()
        return str(desired).lower() == str(current).lower()
    if kind == 'set':
        return sorted(_canon(x) for x in (desired or [])) == sorted(_canon(x) for x in (current or []))
    if kind == 'subset':
        current = current or {}
        return all(k in current and _canon(current[k]) == _canon(v) for k, v in (desired or {}).items())
    if kind == 'dict':
        return _canon(desired or {}) == _canon(current or {})
    return _canon(desired) == _canon(current)


def _short(value):
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 200 else text[:197] + '...'


class ModelDiff:
    """Accumulate differences between a current model and desired values."""

    def __init__(self, current):
        self.exists = current is not None
        self.before = copy.deepcopy(current) if current is not None else {}
        self.after = copy.deepcopy(self.before)
        self.changes = []
        self.changed_keys = []
        self._changed = False

    def compare(self, key, desired, kind='exact', merge=None):
        """Record ``key`` if desired differs. ``merge`` computes the after value (default: desired)."""
        if desired is None:
            return False
        current = self.before.get(key)
        if values_equal(desired, current, kind):
            return False
        if merge is not None:
            after = merge(desired, current)
        elif kind == 'subset':
            after = dict(current or {})
            after.update(desired)
        else:
            after = desired
        self.after[key] = after
        self.changed_keys.append(key)
        self._changed = True
        if self.exists:
            self.changes.append('%s: %s -> %s' % (key, _short(current), _short(after)))
        return True

    def compare_tags(self, desired, purge):
        """Tags: with ``purge`` exactly ``desired``, otherwise ``desired`` added to (or updating) the current tags."""
        return self.compare('tags', desired, 'dict' if purge else 'subset', merge=lambda want, have: merge_tags(want, have, purge))

    def mark_changed(self, key, note):
        """Record a change of ``key`` that the model does not carry (a secret value): ``note`` is the whole
        human-readable change, the before/after models stay as they are."""
        self.changed_keys.append(key)
        self._changed = True
        self.changes.append('%s: %s' % (key, note))

    def set_all(self, desired):
        """For creation: after = desired (None values left out)."""
        for key, value in desired.items():
            if value is not None:
                self.after[key] = value
        self.changes.append('create')
        self._changed = True

    def mark_absent(self):
        self.after = {}
        self.changes.append('delete')
        self._changed = True

    @property
    def changed(self):
        return self._changed

    @property
    def diff(self):
        return dict(before=self.before, after=self.after)


def merge_tags(desired, current, purge):
    """Tags after the update: desired only (purge) or current updated with desired."""
    if desired is None:
        return None
    if purge:
        return dict(desired)
    merged = dict(current or {})
    merged.update(desired)
    return merged


def immutable_errors(current, desired, fields, noun, hints=None):
    """One refusal per field that cannot change on an existing resource but would.

    ``fields`` is a sequence of (key, kind) compared like ``values_equal`` (a desired None is not managed);
    ``hints`` maps a key to how to get there instead (default: recreate the resource).
    """
    errors = []
    for key, kind in fields:
        want = desired.get(key)
        have = current.get(key)
        if values_equal(want, have, kind):
            continue
        hint = (hints or {}).get(key) or 'delete the %s first (state=absent, then present) or use another name' % noun
        errors.append('%s cannot change from %s to %s (the %s of a %s is immutable). Fix: %s'
                      % (key, _short(have), _short(want), key, noun, hint))
    return errors
