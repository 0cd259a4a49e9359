/*
Package glance holds the Glance v2 calls imagetrust needs that gophercloud
v2.15.0 lacks or does not do with enough control, written in gophercloud's own
requests.go/results.go style and reusing its types where they exist.

  - Deactivate, Reactivate: POST /v2/images/{id}/actions/{deactivate,reactivate}.
  - Stage, Upload: stream image data (PUT /stage, PUT /file) without buffering
    it and without ever re-sending a partly consumed body.
  - ImportGlanceDirect, ImportMethods: the interoperable import.
  - Get, ListByProperties: images with every property as a string.
  - Create: with a chosen id and string properties.
  - PatchProperties: the minimal JSON patch from a known state, using "add"
    for new keys and "replace" for existing ones as Glance requires, and no
    request at all when nothing changes.
  - PatchAttributes: replace base attributes (name, visibility, os_hidden).
  - Delete, AddMember, ListMembers, RemoveMember.

Every call takes a *gophercloud.ServiceClient made by openstack.NewImageV2.
Errors are gophercloud's: test them with IsNotFound, IsConflict, IsForbidden
or gophercloud.ResponseCodeIs.

Example:

	r := glance.Create(ctx, img, glance.CreateOpts{ID: id, Name: "x",
		DiskFormat: "qcow2", ContainerFormat: "bare",
		Properties: map[string]string{"imagetrust_vo": "atlas"}})
	im, err := r.Extract()
	...
	err = glance.Stage(ctx, img, id, glance.Sized(f, size)).ExtractErr()
	err = glance.ImportGlanceDirect(ctx, img, id).ExtractErr()
*/
package glance
