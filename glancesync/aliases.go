package glancesync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/validator"
)

// aliasNamespace derives alias ids (UUIDv5), so that racing syncs create the
// same alias id and one of them simply gets a 409.
var aliasNamespace = uuid.MustParse("4c7f0a3e-5b0e-4d8e-9f57-1f3f2a0f1b6d")

func aliasID(project, alias, name string) string {
	return uuid.NewSHA1(aliasNamespace, []byte(project+"\n"+alias+"\n"+name)).String()
}

// aliasNames returns the names of a tag's alias images: TAG and VO/TAG,
// or VO/TAG alone when TAG reads as an image id (idLikeTag).
func aliasNames(tag, alias string) []string {
	if idLikeTag(tag) {
		return []string{alias}
	}
	return []string{tag, alias}
}

// idLikeTag reports whether a tag reads as an image id (a UUID in any
// case, with or without hyphens: what Nova, the gate and people take for
// one). Such a tag gets no bare-name alias: the client looks `--image X`
// up as an id first and by name only when no image it can see has that
// id, so an alias named like an id would answer for an image the user
// cannot see (another VO's, not shared with the project) or that is gone
// (retired, deleted): a VO publishing another VO's image ids as tags would
// boot its own image for them. VO/TAG is never an id.
func idLikeTag(tag string) bool {
	_, err := uuid.Parse(tag)
	return err == nil
}

// liveTags returns the VO/tag keys that have an active image of a valid
// bundle in ours: a bundle whose bytes were refused at upload, or whose
// image is still queued, gets no alias until its image is there.
func liveTags(ours []*Image, items []*item) map[string]bool {
	keys := signedKeys(items)
	live := map[string]bool{}
	for _, im := range ours {
		if im.Props[validator.PropAlias] == "" && im.Status == StatusActive && keys[im.ID] != nil {
			vo, tag := keys.of(im)
			live[vo+"/"+tag] = true
		}
	}
	return live
}

// ensureAliases keeps, per (VO, tag) with a valid bundle, the two data-less
// alias images TAG and VO/TAG (docs/design.md, "Tag aliases"); when live is
// not nil, only for the VO/tag keys it holds. It returns the mirror
// project's alias images that were there, by alias and name, surplus ones
// left out (dedupAliases).
func (s *Syncer) ensureAliases(ctx context.Context, items []*item, have []*Image, live map[string]bool, rp *reporter) map[string]*Image {
	exists := s.dedupAliases(ctx, have, rp) // alias + "\n" + name
	// the tags to keep aliases for, each once, in the items' order
	type tagKey struct{ vo, tag, alias string }
	var tags []tagKey
	done := map[string]bool{}
	for _, it := range items {
		if it.refused != "" {
			continue // its descriptor may not even parse
		}
		alias := it.desc.VO + "/" + it.desc.Tag
		if done[alias] || (live != nil && !live[alias]) {
			continue
		}
		done[alias] = true
		tags = append(tags, tagKey{it.desc.VO, it.desc.Tag, alias})
	}
	// the members of the aliases that exist, listed ahead and in parallel
	// (only those not remembered from an earlier pass)
	var targets []memberTarget
	for _, k := range tags {
		for _, name := range aliasNames(k.tag, k.alias) {
			if im := exists[k.alias+"\n"+name]; im != nil {
				targets = append(targets, memberTarget{id: im.ID, vo: k.vo})
			}
		}
	}
	listed := s.listMembers(ctx, targets)
	for _, k := range tags {
		alias := k.alias
		vis := s.o.VOs[k.vo].Visibility
		for _, name := range aliasNames(k.tag, alias) {
			o := Outcome{ID: aliasID(s.o.MirrorProject, alias, name), VO: k.vo, Tag: k.tag, Action: ActionAlias, Detail: "alias " + name}
			if im := exists[alias+"\n"+name]; im != nil {
				if vis != "" && im.Visibility != vis {
					s.apply(ctx, im.ID, []PatchOp{{Name: "visibility", Value: vis}}, Outcome{ID: im.ID, VO: o.VO, Tag: o.Tag}, ActionUpdate, "alias visibility "+vis, rp)
				}
				s.ensureMembers(ctx, im, k.vo, listed, Outcome{ID: im.ID, VO: o.VO, Tag: o.Tag}, rp)
				continue
			}
			if s.o.DryRun {
				fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s\n", o.Action, o.ID, o.VO, o.Tag, o.Detail)
				rp.add(o)
				continue
			}
			im, made, err := s.createAlias(ctx, CreateSpec{Name: name, Visibility: vis, Props: map[string]string{validator.PropAlias: alias}})
			if err != nil {
				s.log.Error("alias creation failed", "alias", alias, "name", name, "err", err)
				s.m.Errors.Inc()
				rp.fail(alias)
				continue
			}
			if !made {
				continue // a racing sync made it
			}
			o.ID = im.ID
			s.log.Info("alias created", "alias", alias, "name", name, "image", im.ID)
			s.ensureMembers(ctx, im, k.vo, listed, Outcome{ID: im.ID, VO: o.VO, Tag: o.Tag}, rp)
			rp.add(o)
		}
	}
	return exists
}

// removeDeadAliases deletes the alias images (exists: ensureAliases) of
// tags that are gone: left alone, `openstack server create --image TAG`
// would resolve to an alias for ever, and the proxy answer that no image
// has the tag. An alias VO/TAG is deleted only when all of these hold:
//
//   - the VO has a [vo] section and every source of it listed completely
//     this pass (complete: collect; a failed or incomplete listing, an
//     empty source, or a VO no source listed a bundle of, removes nothing:
//     the same rule as retiring images);
//   - no source lists a bundle of the tag for the VO, valid or not (an
//     expired, revoked or held bundle still published keeps its aliases:
//     the proxy then names the reason instead of "no image", and a hold
//     lifted, or a new image of the tag being imported, does not come back
//     to an alias under a new id);
//   - the tag has no current image once this pass's retiring is done
//     (shown: reconcile): with sync.retire = "keep" the images of a tag
//     whose bundles left stay active, unhidden and bootable by tag, and
//     keep their aliases;
//   - the alias image is the mirror project's.
//
// A deleted alias's id is spent: if the tag is published again, the alias
// is made under the next derived id (createAlias).
func (s *Syncer) removeDeadAliases(ctx context.Context, items []*item, exists map[string]*Image, complete, shown map[string]bool, rp *reporter) {
	published := map[string]bool{}
	for _, it := range items {
		if it.desc != nil && it.b.AllowsVO(it.desc.VO) {
			published[it.desc.VO+"/"+it.desc.Tag] = true
		}
	}
	keys := make([]string, 0, len(exists))
	for k := range exists {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a stable plan and log
	for _, k := range keys {
		im := exists[k]
		alias, name, _ := strings.Cut(k, "\n")
		vo, tag, ok := strings.Cut(alias, "/")
		if !ok || !s.configured(vo) || !complete[vo] || im.Owner != s.o.MirrorProject {
			continue
		}
		if name == tag && idLikeTag(tag) {
			// made before bare aliases of id-like tags were left out
			o := Outcome{ID: im.ID, VO: vo, Tag: tag, Action: ActionAliasDelete,
				Detail: "alias " + name + ": the tag reads as an image id"}
			if s.deleteAlias(ctx, im.ID, alias, name, "alias named like an image id not deleted", o, rp) {
				s.log.Warn("alias deleted: the tag reads as an image id, so it gets no bare-name alias", "alias", alias, "name", name, "image", im.ID)
				s.m.Retired.WithLabelValues(ActionAliasDelete).Inc()
			}
			continue
		}
		if published[alias] || shown[alias] {
			continue
		}
		o := Outcome{ID: im.ID, VO: vo, Tag: tag, Action: ActionAliasDelete,
			Detail: "alias " + name + ": no source publishes the tag and it has no current image"}
		if s.deleteAlias(ctx, im.ID, alias, name, "alias of a gone tag not deleted", o, rp) {
			s.log.Info("alias deleted: no source publishes the tag and it has no current image", "alias", alias, "name", name, "image", im.ID)
			s.m.Retired.WithLabelValues(ActionAliasDelete).Inc()
		}
	}
}

// deleteAlias deletes the alias image id (alias, name) and reports o: the
// one deletion of an alias image, of a surplus one (dedupAliases) as of
// the aliases of a gone tag (removeDeadAliases). With DryRun it prints o
// to the plan and reports it, and writes nothing. Once the image is gone
// (deleted, or already gone) its members memo is forgotten. A failure is
// logged as failMsg, counted as an error of the pass, and not reported as
// o. It returns whether it deleted the image (false with DryRun).
func (s *Syncer) deleteAlias(ctx context.Context, id, alias, name, failMsg string, o Outcome, rp *reporter) bool {
	if s.o.DryRun {
		if o.VO == "" && o.Tag == "" {
			fmt.Fprintf(s.o.Plan, "%-10s %s %s\n", o.Action, o.ID, o.Detail)
		} else {
			fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s\n", o.Action, o.ID, o.VO, o.Tag, o.Detail)
		}
		rp.add(o)
		return false
	}
	if err := s.o.Glance.Delete(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error(failMsg, "alias", alias, "name", name, "image", id, "err", err)
		s.m.Errors.Inc()
		rp.fail(id)
		return false
	}
	s.forgetMembers(id)
	rp.add(o)
	return true
}

// removeAliases deletes the alias images (have: the mirror project's
// images carrying imagetrust_alias) when sync.aliases is false: they are
// no longer kept up to date (a new image of a tag, a tag gone), so left
// alone they would go stale. Only the mirror project's, and, as
// removeDeadAliases does, only those of a VO that has a [vo] section and
// whose every source listed completely this pass (complete: collect): a
// failed or incomplete listing deletes nothing. A deleted alias's id is
// spent: with sync.aliases true again, the aliases are made under the next
// derived ids (createAlias).
func (s *Syncer) removeAliases(ctx context.Context, have []*Image, complete map[string]bool, rp *reporter) {
	ims := slices.Clone(have)
	slices.SortFunc(ims, func(a, b *Image) int { // a stable plan and log
		return strings.Compare(a.Props[validator.PropAlias]+"\n"+a.Name+"\n"+a.ID, b.Props[validator.PropAlias]+"\n"+b.Name+"\n"+b.ID)
	})
	for i, im := range ims {
		alias := im.Props[validator.PropAlias]
		vo, tag, ok := strings.Cut(alias, "/")
		if !ok || !s.configured(vo) || !complete[vo] || im.Owner != s.o.MirrorProject || i > 0 && ims[i-1].ID == im.ID {
			continue
		}
		o := Outcome{ID: im.ID, VO: vo, Tag: tag, Action: ActionAliasDelete,
			Detail: "alias " + im.Name + ": sync.aliases is false"}
		if s.deleteAlias(ctx, im.ID, alias, im.Name, "alias not deleted (sync.aliases is false)", o, rp) {
			s.log.Info("alias deleted: sync.aliases is false", "alias", alias, "name", im.Name, "image", im.ID)
			s.m.Retired.WithLabelValues(ActionAliasDelete).Inc()
		}
	}
}

// aliasTries is how many derived ids an alias may take: the first, then
// fallbacks when an id is spent (deleted) or another project's.
const aliasTries = 4

// aliasIDs are the ids an alias may take, in order: derived from the mirror
// project, the alias and its name, so that racing syncs try the same ids in
// the same order and meet on one (one of them gets a 409).
func aliasIDs(project, alias, name string) []string {
	ids := []string{aliasID(project, alias, name)}
	for i := 1; i < aliasTries; i++ {
		ids = append(ids, aliasID(project, alias, name+"\n"+strconv.Itoa(i)))
	}
	return ids
}

// createAlias creates the alias image spec (ID unset) under the first of
// its derived ids that is free, or finds it already made under one by a
// racing sync (made false); when all are spent or taken, under a random id.
// An id moves on to the next only when Glance says it is spent (409 on
// create, 404 on get) or another project's; any other error is the pass's.
func (s *Syncer) createAlias(ctx context.Context, spec CreateSpec) (*Image, bool, error) {
	alias := spec.Props[validator.PropAlias]
	for _, id := range aliasIDs(s.o.MirrorProject, alias, spec.Name) {
		spec.ID = id
		im, err := s.o.Glance.Create(ctx, spec)
		if err == nil {
			return im, true, nil
		}
		if !errors.Is(err, ErrConflict) {
			return nil, false, err
		}
		got, gerr := s.o.Glance.Get(ctx, id)
		switch {
		case gerr == nil && got.Owner == s.o.MirrorProject && got.Props[validator.PropAlias] == alias && got.Name == spec.Name:
			return got, false, nil
		case gerr == nil:
			s.log.Warn("alias id taken by another image; trying the next derived id", "alias", alias, "name", spec.Name, "image", id, "owner", got.Owner)
		case errors.Is(gerr, ErrNotFound):
			s.log.Warn("alias id spent (deleted, or not visible to the mirror project); trying the next derived id", "alias", alias, "name", spec.Name, "image", id)
		default:
			return nil, false, gerr
		}
	}
	// Every derived id is spent or taken. They are predictable (the mirror
	// project id is every catalogue image's owner), so a user can take
	// them all before the tag is ever published: a random id cannot be
	// taken in advance. Syncs racing here may each make one; the next
	// pass's dedupAliases keeps one.
	spec.ID = uuid.NewString()
	im, err := s.o.Glance.Create(ctx, spec)
	if err != nil {
		return nil, false, fmt.Errorf("alias %s named %s: all %d derived ids are spent or taken, and a random one failed: %w", alias, spec.Name, aliasTries, err)
	}
	s.log.Warn("alias made under a random id: every derived id is spent or taken (another project may have taken them on purpose)", "alias", alias, "name", spec.Name, "image", im.ID)
	return im, true, nil
}

// dedupAliases returns the mirror project's alias images by alias and name,
// and deletes surplus ones (two syncs racing with an older version could
// each make one, and then the name resolves to more than one image): the
// one kept has the earliest of the derived ids, else the oldest.
func (s *Syncer) dedupAliases(ctx context.Context, have []*Image, rp *reporter) map[string]*Image {
	groups := map[string][]*Image{}
	for _, im := range have {
		if im.Owner != "" && im.Owner != s.o.MirrorProject {
			continue
		}
		k := im.Props[validator.PropAlias] + "\n" + im.Name
		if slices.ContainsFunc(groups[k], func(o *Image) bool { return o.ID == im.ID }) {
			continue // listed twice: one image, not a surplus one
		}
		groups[k] = append(groups[k], im)
	}
	exists := map[string]*Image{}
	for k, ims := range groups {
		alias, name, _ := strings.Cut(k, "\n")
		rank := map[string]int{}
		for i, id := range aliasIDs(s.o.MirrorProject, alias, name) {
			rank[id] = i + 1
		}
		sort.Slice(ims, func(i, j int) bool {
			ri, rj := rank[ims[i].ID], rank[ims[j].ID]
			switch {
			case ri != 0 && rj != 0:
				return ri < rj
			case ri != 0 || rj != 0:
				return ri != 0
			case !ims[i].CreatedAt.Equal(ims[j].CreatedAt):
				return ims[i].CreatedAt.Before(ims[j].CreatedAt)
			}
			return ims[i].ID < ims[j].ID
		})
		exists[k] = ims[0]
		for _, extra := range ims[1:] {
			o := Outcome{ID: extra.ID, Action: ActionDeleted, Detail: "surplus alias " + name + " (kept " + ims[0].ID + ")"}
			if s.deleteAlias(ctx, extra.ID, alias, name, "surplus alias not deleted", o, rp) {
				s.log.Warn("surplus alias deleted", "alias", alias, "name", name, "image", extra.ID, "kept", ims[0].ID)
			}
		}
	}
	return exists
}

// configured reports whether vo has a [vo] section.
func (s *Syncer) configured(vo string) bool {
	_, ok := s.o.VOs[vo]
	return ok
}
