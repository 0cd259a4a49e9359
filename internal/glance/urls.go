package glance

import "github.com/gophercloud/gophercloud/v2"

const rootPath = "images"

func imageURL(c *gophercloud.ServiceClient, id string) string {
	return c.ServiceURL(rootPath, id)
}

func listURL(c *gophercloud.ServiceClient) string {
	return c.ServiceURL(rootPath)
}

func actionURL(c *gophercloud.ServiceClient, id, action string) string {
	return c.ServiceURL(rootPath, id, "actions", action)
}

func stageURL(c *gophercloud.ServiceClient, id string) string {
	return c.ServiceURL(rootPath, id, "stage")
}

func fileURL(c *gophercloud.ServiceClient, id string) string {
	return c.ServiceURL(rootPath, id, "file")
}

func importURL(c *gophercloud.ServiceClient, id string) string {
	return c.ServiceURL(rootPath, id, "import")
}
