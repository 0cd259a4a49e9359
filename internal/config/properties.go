package config

import (
	"path"
	"slices"
	"strings"
)

// DefaultImageProperties are the free-form descriptor properties a VO may
// set on its images when neither sync.image_properties nor its
// vo.NAME.image_properties is set: those with which Nova (Zed's
// ImageMetaProps and their legacy names) only shapes the guest's own
// virtual hardware within what the flavor grants, or hints at its OS.
// Left out: what claims or pins host resources or steers placement
// (hw_cpu_policy, hw_cpu_thread_policy, hw_cpu_realtime_mask, hw_numa_*,
// hw_mem_page_size, hw_locked_memory, hw_pci_numa_affinity_policy,
// trait:*), host security features and keys (hw_mem_encryption,
// hw_tpm_*, hw_ephemeral_encryption*, hw_pmu, img_hide_hypervisor_id),
// what boots or attaches other than the image's own bytes (hw_ipxe_boot,
// os_command_line, img_root_device_name, img_config_drive), Nova's and
// Cinder's own checks and volume choices (img_signature*,
// cinder_img_volume_type, cinder_encryption_key_id), emulation of another
// architecture (hw_emulation_architecture) and the XenAPI and VMware
// drivers' img_* knobs. docs/security-model.md gives each one's reason.
var DefaultImageProperties = []string{
	"hw_architecture", "hw_boot_menu", "hw_cdrom_bus", "hw_cpu_cores", "hw_cpu_max_cores",
	"hw_cpu_max_sockets", "hw_cpu_max_threads", "hw_cpu_sockets", "hw_cpu_threads", "hw_disk_bus",
	"hw_firmware_type", "hw_floppy_bus", "hw_input_bus", "hw_machine_type", "hw_pointer_model",
	"hw_qemu_guest_agent", "hw_rescue_bus", "hw_rescue_device", "hw_rng_model", "hw_scsi_model",
	"hw_serial_port_count", "hw_time_hpet", "hw_video_model", "hw_video_ram", "hw_vif_model",
	"hw_vif_multiqueue_enabled", "hw_viommu_model", "hw_vm_mode", "hw_watchdog_action",
	"hypervisor_type", "img_hv_type", "os_admin_user", "os_require_quiesce", "os_secure_boot",
	"os_type", "vm_mode",
}

// ImagePropertyPatterns are the patterns of the free-form descriptor
// properties VO vo may set in this site's Glance: its
// vo.NAME.image_properties when set (an empty list: none), else
// sync.image_properties when set, else DefaultImageProperties.
func (c *Config) ImagePropertyPatterns(vo string) []string {
	return ImagePropertyPatterns(c.Sync, c.VO[vo])
}

// ImagePropertyPatterns is Config.ImagePropertyPatterns on the [sync]
// section s and the VO's section v.
func ImagePropertyPatterns(s Sync, v VO) []string {
	switch {
	case v.ImageProperties != nil:
		return v.ImageProperties
	case s.ImageProperties != nil:
		return s.ImageProperties
	}
	return DefaultImageProperties
}

// PropertyAllowed reports whether name matches one of patterns
// (path.Match; checked by checkPropertyPatterns when loaded).
func PropertyAllowed(patterns []string, name string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, err := path.Match(p, name)
		return ok && err == nil
	})
}

// propertyPatternChars are the characters of a property name (the
// descriptor's keys: letters, digits, "_", ":", ".", "-") and of
// path.Match's syntax.
const propertyPatternChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.-*?[]^!\\"

// checkPropertyPatterns refuses an image_properties pattern that
// path.Match cannot read, or that could match no descriptor property (an
// empty one, or one with a character no property name has: "=", a space,
// "/"), naming it: a typo would silently let no property through.
func checkPropertyPatterns(key string, patterns []string) error {
	for i, p := range patterns {
		if p == "" {
			return keyErrorf(key, ": entry %d is empty", i+1)
		}
		if strings.ContainsFunc(p, func(r rune) bool { return !strings.ContainsRune(propertyPatternChars, r) }) {
			return keyErrorf(key, ": pattern %q matches no property name (names are letters, digits, _ : . -; patterns add * ? [...] of path.Match)", p)
		}
		if _, err := path.Match(p, ""); err != nil {
			return keyErrorf(key, ": pattern %q: %v (path.Match syntax: * ? [...] \\)", p, err)
		}
	}
	return nil
}
