// Fields several pages ask for, declared once.
import { graphql } from "../gql";

/** Every page query spreads this: the header's name and bell come with the page. */
export const ViewerHeader = graphql(`
  fragment ViewerHeader on Query {
    viewer {
      id
      username
      unreadNotificationCount
    }
  }
`);

/** What a dataset's label and deletion banner need. */
export const DatasetLabelFields = graphql(`
  fragment DatasetLabelFields on TrainingDataset {
    id
    filename
    sizeBytes
    visibility
    status
    expiresAt
    deletedAt
    deletionReason
  }
`);

/** A notification as the bell, the list and the live stream show it. */
export const NotificationFields = graphql(`
  fragment NotificationFields on Notification {
    id
    kind
    message
    createdAt
    readAt
    dataset {
      ...DatasetLabelFields
      version {
        id
        name
        model {
          id
          name
        }
      }
    }
  }
`);
