package glancesync

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/imagetrust/imagetrust/validator"
)

// aliasNamespace derives alias ids (UUIDv5), so that racing syncs create the
// same alias id and one of them simply gets a 409.
var aliasNamespace = uuid.MustParse("4c7f0a3e-5b0e-4d8e-9f57-1f3f2a0f1b6d")

func aliasID(project, alias, name string) string {
	return uuid.NewSHA1(aliasNamespace, []byte(project+"\n"+alias+"\n"+name)).String()
}

// liveTags returns the VO/tag keys that have an active image of a valid
// bundle in ours: a bundle whose bytes were refused at upload, or whose
// image is still queued, gets no alias until its image is there.
func liveTags(ours []*Image, items []*item) map[string]bool {
	valid := map[string]bool{}
	for _, it := range items {
		if it.refused == "" {
			valid[it.desc.UUID] = true
		}
	}
	live := map[string]bool{}
	for _, im := range ours {
		if im.Props[validator.PropAlias] == "" && im.Status == StatusActive && valid[im.ID] {
			live[im.Props[validator.PropVO]+"/"+im.Props[validator.PropTag]] = true
		}
	}
	return live
}

// ensureAliases keeps, per (VO, tag) with a valid bundle, the two data-less
// alias images TAG and VO/TAG (docs/design.md, "Tag aliases"); when live is
// not nil, only for the VO/tag keys it holds.
func (s *Syncer) ensureAliases(ctx context.Context, items []*item, have []*Image, live map[string]bool, rp *reporter) {
	exists := map[string]*Image{} // alias + "\n" + name
	for _, im := range have {
		exists[im.Props[validator.PropAlias]+"\n"+im.Name] = im
	}
	done := map[string]bool{}
	for _, it := range items {
		if it.refused != "" {
			continue
		}
		alias := it.desc.VO + "/" + it.desc.Tag
		if done[alias] || (live != nil && !live[alias]) {
			continue
		}
		done[alias] = true
		vis := s.o.VOs[it.desc.VO].Visibility
		for _, name := range []string{it.desc.Tag, alias} {
			o := Outcome{ID: aliasID(s.o.MirrorProject, alias, name), VO: it.desc.VO, Tag: it.desc.Tag, Action: ActionAlias, Detail: "alias " + name}
			if im := exists[alias+"\n"+name]; im != nil {
				if vis != "" && im.Visibility != vis {
					s.apply(ctx, im.ID, []PatchOp{{Name: "visibility", Value: vis}}, Outcome{ID: im.ID, VO: o.VO, Tag: o.Tag}, ActionUpdate, "alias visibility "+vis, rp)
				}
				s.ensureMembers(ctx, im, it.desc.VO, Outcome{ID: im.ID, VO: o.VO, Tag: o.Tag}, rp)
				continue
			}
			if s.o.DryRun {
				fmt.Fprintf(s.o.Plan, "%-10s %s %s/%s %s\n", o.Action, o.ID, o.VO, o.Tag, o.Detail)
				rp.add(o)
				continue
			}
			spec := CreateSpec{ID: o.ID, Name: name, Visibility: vis, Props: map[string]string{validator.PropAlias: alias}}
			im, err := s.o.Glance.Create(ctx, spec)
			if errors.Is(err, ErrConflict) {
				got, gerr := s.o.Glance.Get(ctx, o.ID)
				if gerr == nil && got.Owner == s.o.MirrorProject && got.Props[validator.PropAlias] == alias {
					continue // a racing sync made it
				}
				// the derived id is spent or squatted: take a random one
				s.log.Warn("alias id unusable; creating the alias under a random id", "alias", alias, "name", name, "id", o.ID)
				spec.ID = uuid.NewString()
				o.ID = spec.ID
				im, err = s.o.Glance.Create(ctx, spec)
			}
			if err != nil {
				s.log.Error("alias creation failed", "alias", alias, "name", name, "err", err)
				s.m.Errors.Inc()
				rp.fail()
				continue
			}
			s.log.Info("alias created", "alias", alias, "name", name, "id", im.ID)
			s.ensureMembers(ctx, im, it.desc.VO, Outcome{ID: im.ID, VO: o.VO, Tag: o.Tag}, rp)
			rp.add(o)
		}
	}
}
